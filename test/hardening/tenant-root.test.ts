// A tenant with sudo on a physical machine is root there, and a physical machine is never
// reimaged. The audit's attack: one pam_exec line in /etc/pam.d/sshd records every password
// sshd checks; released, reserved again, the tenant read berth's root password (and would
// have read later tenants' chosen passwords, which went to chpasswd in clear). berth now logs
// in with a key of its own, sends passwords only hashed, and keeps a machine a tenant was
// root on out of the pool until an admin says it was reprovisioned.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/infra/secret-box.js';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { rootKey, sshRun, startMachine, type TestMachine } from '../helpers/ssh-machines.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Records the service, user and whatever authtok PAM hands over, one line each. */
const CAPTURE_SCRIPT = '#!/bin/sh\n{ printf "%s %s %s: " "$PAM_SERVICE" "$PAM_TYPE" "$PAM_USER"; tr "\\0" "\\n"; echo; } >>/var/tmp/authtok\n';
/** Records what berth feeds chpasswd (the next tenant's password), then sets it as asked. */
const CHPASSWD_WRAPPER = '#!/bin/sh\ntee -a /var/tmp/authtok | /usr/sbin/chpasswd.real "$@"\n';
const PLANT = [
  `printf '%s' '${CAPTURE_SCRIPT}' >/usr/local/bin/capture-authtok`,
  'chmod 755 /usr/local/bin/capture-authtok',
  "sed -i '1i auth optional pam_exec.so expose_authtok /usr/local/bin/capture-authtok' /etc/pam.d/sshd",
  'mv /usr/sbin/chpasswd /usr/sbin/chpasswd.real',
  `printf '%s' '${CHPASSWD_WRAPPER}' >/usr/sbin/chpasswd`,
  'chmod 755 /usr/sbin/chpasswd',
  'echo planted',
].join(' && ');

const reserve = (t: TestApp, who: Session, payload: Record<string, unknown>) =>
  t.app.inject({ method: 'POST', url: '/v1/reservations', headers: who.auth, payload });
const release = (t: TestApp, who: Session, id: string) => t.app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: who.auth });
const machineOf = async (t: TestApp, admin: Session, name: string) =>
  json(await t.app.inject({ method: 'GET', url: `/v1/machines/${name}`, headers: admin.auth }));

describe('a tenant with sudo who hooks PAM on a machine registered with its root password', () => {
  let t: TestApp;
  let admin: Session;
  let m: TestMachine;
  beforeAll(async () => {
    [t, m] = await Promise.all([createTestApp(), startMachine('pam-box', { pam: true })]);
    admin = await adminSession(t);
  });
  afterAll(async () => {
    await t.close();
    await m.stop();
  });

  it('catches no secret of berth nor any tenant password', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/machines',
      headers: admin.auth,
      payload: { name: m.name, host: m.host, port: m.port, username: 'root', password: m.rootPassword, host_key: m.hostKey, allow_sudo: true },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(json(created).warning).toMatch(/root.*needs_reprovision/s);

    const alice = await userSession(t, 'alice');
    const first = await reserve(t, alice, { count: 1, password: 'alice tenant pass 1' });
    expect(first.statusCode, first.body).toBe(201);
    const planted = await sshRun(
      { host: m.host, port: m.port, username: 'alice', password: 'alice tenant pass 1' },
      `echo ${Buffer.from(PLANT).toString('base64')} | base64 -d | sudo -n sh`,
    );
    expect(planted.stdout, planted.stderr).toBe('planted');
    // Alice's own password login (before the hook) is not the point: start the record empty.
    await m.sh('rm -f /var/tmp/authtok');

    // Every way berth logs in while the hook is there: a check, the release, and (once an admin
    // cleared the machine without reinstalling it) the next tenant's reservation and release.
    expect(json(await t.app.inject({ method: 'POST', url: `/v1/machines/${m.name}/check`, headers: admin.auth })).reachable).toBe(true);
    expect((await release(t, alice, json(first).id)).statusCode).toBe(200);
    const captured = (await m.sh('cat /var/tmp/authtok 2>/dev/null')).out;
    expect(captured).not.toContain(m.rootPassword);

    const cleared = await t.app.inject({ method: 'POST', url: `/v1/machines/${m.name}/reprovisioned`, headers: admin.auth });
    expect(cleared.statusCode, cleared.body).toBe(200);
    const bob = await userSession(t, 'bob');
    const second = await reserve(t, bob, { count: 1, password: 'bobs chosen passphrase 2' });
    expect(second.statusCode, second.body).toBe(201);
    expect((await release(t, bob, json(second).id)).statusCode).toBe(200);

    // The hooks work: a password login (a wrong one, the test's own) is recorded, and so is
    // what berth gave chpasswd: bob's password hashed, never the password.
    await sshRun({ host: m.host, port: m.port, username: 'root', password: 'canary-not-a-secret' }, 'true').catch(() => {});
    const record = (await m.sh('cat /var/tmp/authtok')).out;
    expect(record).toContain('canary-not-a-secret');
    expect(record).toMatch(/^bob:\$6\$/m);
    const row = await t.prisma.machine.findUniqueOrThrow({ where: { name: m.name } });
    const berthKey = createSecretBox(Buffer.from(fs.readFileSync(path.join(t.dataDir, 'secret.key'), 'utf8').trim(), 'base64')).open(row.credential);
    expect(row.credentialKind).toBe('private_key');
    expect(berthKey).not.toContain(m.rootPassword);
    const keyBody = berthKey.split('\n').filter((l) => l && !l.startsWith('-----'));
    for (const secret of [m.rootPassword, 'alice tenant pass 1', 'bobs chosen passphrase 2', ...keyBody]) expect(record).not.toContain(secret);
  });
});

describe('berth replaces the password it was given by a key of its own', () => {
  let t: TestApp;
  let admin: Session;
  let m: TestMachine;
  beforeAll(async () => {
    [t, m] = await Promise.all([createTestApp(), startMachine('key-box', { pam: true })]);
    admin = await adminSession(t);
  });
  afterAll(async () => {
    await t.close();
    await m.stop();
  });
  const post = (url: string, payload?: Record<string, unknown>) => t.app.inject({ method: 'POST', url, headers: admin.auth, ...(payload ? { payload } : {}) });
  const berthLines = async () => (await m.sh('grep -c berth-login-key /root/.ssh/authorized_keys')).out.trim();

  it('installs it once, idempotently, and says why when it cannot', async () => {
    const created = await post('/v1/machines', { name: m.name, host: m.host, port: m.port, username: 'root', password: m.rootPassword, host_key: m.hostKey });
    expect(created.statusCode, created.body).toBe(201);
    expect(json(created)).toMatchObject({ allow_sudo: false, keep_password: false });
    expect(json(created).warning).toBeUndefined();

    // sshd ignores authorized_keys in a directory others may write (StrictModes): the key cannot work.
    await m.sh('chmod 777 /root/.ssh');
    const failed = json(await post(`/v1/machines/${m.name}/check`));
    expect(failed).toMatchObject({ reachable: false, status: 'offline' });
    expect(failed.error).toMatch(/login key was added .* but a login with it failed/);
    expect((await machineOf(t, admin, m.name)).status_reason).toMatch(/login key/);
    expect((await t.prisma.machine.findUniqueOrThrow({ where: { name: m.name } })).credentialKind).toBe('password');
    expect(await berthLines()).toBe('0');

    await m.sh('chmod 700 /root/.ssh');
    for (let i = 0; i < 2; i++) expect(json(await post(`/v1/machines/${m.name}/check`))).toMatchObject({ reachable: true, status: 'available' });
    expect(await berthLines()).toBe('1');
    expect((await t.prisma.machine.findUniqueOrThrow({ where: { name: m.name } })).credentialKind).toBe('private_key');
    // The admin's own key is still there, and root's password no longer logs berth in: a new one does not matter.
    expect((await m.sh('grep -c -v berth-login-key /root/.ssh/authorized_keys')).out.trim()).toBe('1');
    await m.sh('echo "root:changed-by-the-admin" | chpasswd');
    expect(json(await post(`/v1/machines/${m.name}/check`))).toMatchObject({ reachable: true });
  });

  it('keeps logging in with the password when the admin asks to keep it', async () => {
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/machines/${m.name}`,
      headers: admin.auth,
      payload: { password: 'changed-by-the-admin', keep_password: true },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(json(patched).keep_password).toBe(true);
    await m.sh('rm -f /var/tmp/authtok');
    expect(json(await post(`/v1/machines/${m.name}/check`))).toMatchObject({ reachable: true });
    expect((await t.prisma.machine.findUniqueOrThrow({ where: { name: m.name } })).credentialKind).toBe('password');
    // keep_password goes with a password.
    const bad = await t.app.inject({ method: 'PATCH', url: `/v1/machines/${m.name}`, headers: admin.auth, payload: { keep_password: true } });
    expect(json(bad)).toMatchObject({ status: 400 });
  });
});

describe('a machine a tenant was root on', () => {
  let pool: Pool;
  beforeAll(async () => {
    pool = await createPool(2, {}, 'reprov');
    await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${pool.machines[0]!.name}`, headers: pool.admin.auth, payload: { allow_sudo: true } });
  });
  afterAll(() => pool.close());

  it('waits in needs_reprovision until an admin clears it; one without sudo goes straight back', async () => {
    const [sudoBox, plainBox] = pool.machines as [TestMachine, TestMachine];
    const { t, admin } = pool;
    const carol = await userSession(t, 'carol');
    const r = await reserve(t, carol, { machines: [sudoBox.name, plainBox.name], password: 'carol passphrase 3' });
    expect(r.statusCode, r.body).toBe(201);
    for (const [box, code] of [[sudoBox, 0], [plainBox, 1]] as const) {
      const sudo = await sshRun({ host: box.host, port: box.port, username: 'carol', password: 'carol passphrase 3' }, 'sudo -n true; echo $?');
      expect(sudo.stdout.trim()).toBe(String(code));
    }
    // Taking sudo away mid-reservation does not undo what the tenant could already do.
    await t.app.inject({ method: 'PATCH', url: `/v1/machines/${sudoBox.name}`, headers: admin.auth, payload: { allow_sudo: false } });
    expect((await release(t, carol, json(r).id)).statusCode).toBe(200);

    expect(await machineOf(t, admin, sudoBox.name)).toMatchObject({ status: 'needs_reprovision', status_reason: expect.stringMatching(/sudo/) });
    expect((await machineOf(t, carol, sudoBox.name)).status_reason).toBe('needs reprovision');
    expect((await machineOf(t, admin, plainBox.name)).status).toBe('available');
    const listed = json(await t.app.inject({ method: 'GET', url: '/v1/machines?status=needs_reprovision', headers: admin.auth }));
    expect(listed.items.map((m: { name: string }) => m.name)).toEqual([sudoBox.name]);
    expect(json(await t.app.inject({ method: 'GET', url: '/v1/pool', headers: carol.auth }))).toMatchObject({ needs_reprovision: 1, available: 1 });

    // Nobody gets it meanwhile, and maintenance is no way around it.
    expect(json(await reserve(t, carol, { machines: [sudoBox.name] })).code).toBe('insufficient_capacity');
    expect((await t.app.inject({ method: 'PUT', url: `/v1/machines/${sudoBox.name}/maintenance`, headers: admin.auth, payload: { reason: 'reinstall' } })).statusCode).toBe(200);
    expect(json(await t.app.inject({ method: 'DELETE', url: `/v1/machines/${sudoBox.name}/maintenance`, headers: admin.auth })).status).toBe('needs_reprovision');

    const clear = (name: string) => t.app.inject({ method: 'POST', url: `/v1/machines/${name}/reprovisioned`, headers: admin.auth });
    expect(json(await clear(plainBox.name))).toMatchObject({ status: 409, code: 'not_awaiting_reprovision' });
    expect((await t.app.inject({ method: 'POST', url: `/v1/machines/${sudoBox.name}/reprovisioned`, headers: carol.auth })).statusCode).toBe(403);
    expect(json(await clear(sudoBox.name))).toMatchObject({ status: 'available', status_reason: null });
    // Cleared, and sudo now off: the next release goes straight back.
    const again = await reserve(t, carol, { machines: [sudoBox.name] });
    expect(again.statusCode, again.body).toBe(201);
    expect((await release(t, carol, json(again).id)).statusCode).toBe(200);
    expect((await machineOf(t, admin, sudoBox.name)).status).toBe('available');
  });
});

describe('with a reprovision command configured', () => {
  let pool: Pool;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-reprovision-'));
  const script = path.join(dir, 'reinstall');
  // Records its arguments and environment; fails while the flag file exists.
  fs.writeFileSync(
    script,
    `#!/bin/sh\nprintf '%s\\n' "$*" >"${dir}/args"\nenv >"${dir}/env"\nif [ -e "${dir}/fail" ]; then echo "no PXE answer" >&2; exit 3; fi\n`,
    { mode: 0o755 },
  );
  beforeAll(async () => {
    pool = await createPool(1, { BERTH_REPROVISION_COMMAND: script }, 'reinst');
    await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${pool.machines[0]!.name}`, headers: pool.admin.auth, payload: { allow_sudo: true } });
  });
  afterAll(async () => {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Reserves the machine as dave, releases it, and has the job start the command; the machine as it ends up. */
  async function releaseAndReprovision(until: (m: { status: string; status_reason: string | null }) => boolean) {
    const { t, admin } = pool;
    const dave = await userSession(t, `dave${Math.random().toString(36).slice(2, 8)}`);
    const r = await reserve(t, dave, { count: 1 });
    expect(r.statusCode, r.body).toBe(201);
    expect((await release(t, dave, json(r).id)).statusCode).toBe(200);
    await t.app.jobs.runNow('reprovision');
    const deadline = Date.now() + 60_000;
    for (;;) {
      const m = await machineOf(t, admin, pool.machines[0]!.name);
      if (until(m)) return m;
      if (Date.now() > deadline) throw new Error(`the machine stayed ${m.status} (${m.status_reason})`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  it('runs it without a shell, with the machine and berth key but no secret, and returns the machine when it succeeds', async () => {
    const m = pool.machines[0]!;
    expect(await releaseAndReprovision((x) => x.status === 'available')).toMatchObject({ status: 'available', status_reason: null });
    expect(fs.readFileSync(path.join(dir, 'args'), 'utf8').trim()).toBe(`${m.name} ${m.host} ${m.port}`);
    const env = fs.readFileSync(path.join(dir, 'env'), 'utf8');
    expect(env).toContain('BERTH_LOGIN_USER=root\n');
    expect(env).toContain(`BERTH_LOGIN_PUBLIC_KEY=${rootKey.public.split(' ').slice(0, 2).join(' ')}\n`);
    expect(env).not.toMatch(/SECRET|DATABASE|ADMIN_PASSWORD/);
  });

  it('keeps the machine waiting, with the reason, when it fails', async () => {
    fs.writeFileSync(path.join(dir, 'fail'), '');
    const m = await releaseAndReprovision((x) => /failed/.test(x.status_reason ?? ''));
    expect(m).toMatchObject({ status: 'needs_reprovision', status_reason: expect.stringMatching(/exit 3: no PXE answer/) });
    // Not run again by itself: the admin decides.
    await pool.t.app.jobs.runNow('reprovision');
    expect((await machineOf(pool.t, pool.admin, pool.machines[0]!.name)).status_reason).toMatch(/exit 3/);
  });
});
