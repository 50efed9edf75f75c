// Two tenants, one after the other, on one real sshd machine: what the first leaves behind
// (files in /tmp, /var/tmp, /dev/shm, a symlink, a detached process, a crontab, a System V
// IPC segment) is gone when the second logs in, the second never gets the first's uid, and
// something that could not be removed keeps that uid out of use until a sweep finds it gone.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../src/infra/ssh.js';
import { json, userSession, type Session } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { sshRun, type TestMachine } from '../helpers/ssh-machines.js';

let pool: Pool;
let m: TestMachine;
let alice: Session;
let bob: Session;
const key = generateSshKeyPair();

beforeAll(async () => {
  pool = await createPool(1, {}, 'residue');
  m = pool.machines[0]!;
  // Without sudo: a tenant who had it leaves a machine that needs more than an account's removal.
  const patched = await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${m.name}`, headers: pool.admin.auth, payload: { allow_sudo: false } });
  expect(patched.statusCode, patched.body).toBe(200);
  alice = await userSession(pool.t, 'alice');
  bob = await userSession(pool.t, 'bob');
});
afterAll(() => pool.close());
// A failed case leaves its reservation behind: the next one starts with the machine free.
afterEach(async () => {
  const live = json(await pool.t.app.inject({ method: 'GET', url: '/v1/reservations?all=true', headers: pool.admin.auth }));
  for (const r of live.items.filter((x: { status: string }) => x.status === 'active'))
    await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${r.id}`, headers: pool.admin.auth });
});

/** Reserves the pool's one machine; runs commands there as the reservation's account. */
async function reserve(s: Session) {
  const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: s.auth, payload: { count: 1, ssh_public_key: key.public } });
  expect(res.statusCode, res.body).toBe(201);
  const r = json(res);
  const run = (command: string) => sshRun({ host: m.host, port: m.port, username: r.account.username, privateKey: key.private }, command);
  const uid = Number((await run('id -u')).stdout);
  expect(uid).toBeGreaterThan(0);
  return { id: r.id as string, run, uid, release: () => release(s, r.id) };
}

async function release(s: Session, id: string) {
  const res = await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: s.auth });
  expect(res.statusCode, res.body).toBe(200);
  expect(json(res).status).toBe('released');
  const machine = json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${m.name}`, headers: pool.admin.auth }));
  expect(machine.status).toBe('available');
}

/** Asked as root inside the machine: everything of `id` as a uid or gid — files on every local filesystem, processes, IPC. */
async function whatRemainsOf(id: number): Promise<string> {
  const ipc = `NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["uid"] == ${id} || $col["gid"] == ${id} || $col["cuid"] == ${id} || $col["cgid"] == ${id} { print "ipc " f " " $2 }`;
  const r = await m.sh(
    `find / /dev/shm /dev/mqueue -xdev \\( -uid ${id} -o -gid ${id} \\) -printf 'file %p\\n'; ` +
      `ps -e -o ruid=,euid=,stat=,args= | awk '($1 == ${id} || $2 == ${id}) && $3 !~ /^Z/ { print "process " $0 }'; ` +
      `for f in shm sem msg; do awk -v f=$f '${ipc}' /proc/sysvipc/$f; done`,
  );
  return r.out.trim();
}

describe("the next tenant on a machine and the previous tenant's leftovers", () => {
  it('finds nothing of the previous account: no file, process, job or IPC object, and another uid', async () => {
    const a = await reserve(alice);
    const planted = await a.run(
      [
        'umask 077',
        'echo alice-secret > /tmp/secret && echo alice-secret > /var/tmp/secret && echo alice-secret > /dev/shm/secret',
        'ln -s /tmp/secret /tmp/link && mkdir -m 777 /tmp/shared && echo alice-secret > /tmp/shared/file',
        'setsid nohup sleep 100000 </dev/null >/dev/null 2>&1 &',
        'ipcmk -M 4096 >/dev/null',
        'echo planted',
      ].join('\n'),
    );
    expect(planted.stdout, planted.stderr).toBe('planted');
    // cron is not in the image: its spool file stands for the crontab (crontab(1) writes it so, owned by the user).
    expect((await m.sh(`mkdir -p /var/spool/cron/crontabs && echo '* * * * * cat /tmp/secret' > /var/spool/cron/crontabs/alice && chown alice /var/spool/cron/crontabs/alice`)).code).toBe(0);
    // The leftovers are really there before the release, as alice's uid.
    const before = await whatRemainsOf(a.uid);
    for (const what of ['/tmp/secret', '/var/tmp/secret', '/dev/shm/secret', '/tmp/link', '/tmp/shared', '/var/spool/cron/crontabs/alice', 'sleep 100000', 'ipc shm '])
      expect(before).toContain(what);

    await a.release();

    const b = await reserve(bob);
    expect(await whatRemainsOf(a.uid)).toBe('');
    expect(b.uid).not.toBe(a.uid);
    const seen = await b.run('cat /tmp/secret /var/tmp/secret /dev/shm/secret /tmp/link /tmp/shared/file 2>/dev/null; ls /tmp /var/tmp /dev/shm');
    expect(seen.stdout).not.toContain('alice-secret');
    expect(seen.stdout).not.toMatch(/secret|link|shared/);
    await b.release();
  });

  it('keeps a uid out of use while something of it could not be removed, and frees it once it is gone', async () => {
    const a = await reserve(alice);
    expect((await a.run('umask 077 && echo alice-secret > /tmp/secret && echo planted')).stdout).toBe('planted');
    // Something of alice's uid the sweep cannot remove: a mount point (a file Docker
    // bind-mounts; on a real machine, say, an immutable file), readable by its owner only.
    expect((await m.sh(`chown ${a.uid}:${a.uid} /etc/hostname && chmod 600 /etc/hostname && echo alice-secret > /etc/hostname`)).code).toBe(0);

    // The release still succeeds: the account, its home and whatever could go are gone.
    await a.release();
    expect(await whatRemainsOf(a.uid)).toBe(`file /etc/hostname`);

    // The uid counter going round its range to alice's number (~34,000 accounts later) is
    // set here at once: a retired uid is skipped.
    expect((await m.sh(`mkdir -p /var/lib/berth/ids && echo ${a.uid} > /var/lib/berth/ids/next`)).code).toBe(0);
    const b = await reserve(bob);
    expect(b.uid).not.toBe(a.uid);
    const read = await b.run('cat /etc/hostname /tmp/secret');
    expect(read.code).not.toBe(0);
    expect(read.stdout).not.toContain('alice-secret');

    // Once the machine's owner has dealt with it, the next release's sweep finds nothing
    // of alice's uid left and frees it: the counter may hand it out again.
    expect((await m.sh(`echo ${m.name} > /etc/hostname && chown 0:0 /etc/hostname && chmod 644 /etc/hostname`)).code).toBe(0);
    await b.release();
    expect((await m.sh(`echo ${a.uid} > /var/lib/berth/ids/next`)).code).toBe(0);
    const again = await reserve(alice);
    expect(again.uid).toBe(a.uid);
    expect((await again.run('cat /tmp/secret /etc/hostname 2>&1')).stdout).not.toContain('alice-secret');
    await again.release();
  });
});
