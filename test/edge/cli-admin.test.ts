// `berth` for the people who run the pool: the real binary as a subprocess, over HTTPS
// through Caddy, against a real berth with a real sshd machine, the real Docker engine
// and QEMU (TCG here): import machines from YAML, check, maintenance, add, remove; users;
// build an image from a directory with its log followed live; a VM pool that berth waits
// for, a VM reserved and logged in to with `berth ssh`, and the pool emptied again.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PASSWORD } from '../helpers/app.js';
import { startCaddyFor, type Caddy } from '../helpers/caddy.js';
import { cliUser, type CliUser } from '../helpers/cli.js';
import { watchedForSecrets } from '../helpers/cli-secrets.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { BASE_IMAGE, rootKey, startMachine, type TestMachine } from '../helpers/ssh-machines.js';

/** Builds and boots under software emulation share 2 cores with the rest of the suite. */
const SLOW_MS = 300_000;
// Every command is a Node process of its own: seconds each when the machine is busy.
vi.setConfig({ testTimeout: 180_000 });

let pool: Pool;
let caddy: Caddy;
let admin: CliUser;
let bob: CliUser;
let machine: TestMachine;

beforeAll(async () => {
  [pool, machine] = await Promise.all([createPool(0, { BERTH_TRUST_PROXY: '127.0.0.1', BERTH_VM_WATCH_SECONDS: '1' }, 'cliadm'), startMachine('cli-imported')]);
  caddy = await startCaddyFor(pool.t.app);
  // Every command is checked for the passwords, machine credentials and session tokens its user holds.
  admin = watchedForSecrets(cliUser({ url: caddy.url, caPath: caddy.rootPath }), {
    'the admin password': PASSWORD,
    "the machine's root password": machine.rootPassword,
    "the machines' root private key": rootKey.private.split('\n').find((line) => line.length >= 64)!,
  });
  bob = watchedForSecrets(cliUser({ url: caddy.url, caPath: caddy.rootPath }), { 'his password': PASSWORD });
  await admin.ok(['login', pool.admin.username], { input: `${PASSWORD}\n` });
});
afterAll(async () => {
  await caddy?.stop();
  await pool?.close();
  await machine?.stop();
  admin?.remove();
  bob?.remove();
});

const file = (user: CliUser, name: string, text: string) => {
  const p = path.join(user.home, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  return p;
};

describe('machines, as an admin', () => {
  it('imports the YAML seed format: good entries are saved, bad ones listed (exit 1), a second import updates', async () => {
    const entry = [
      '  - name: imported-1',
      '    host: 127.0.0.1',
      `    port: ${machine.port}`,
      '    user: root',
      `    password: ${machine.rootPassword}`,
      `    host_key: ${machine.hostKey}`,
      '    type: lab',
      '    tags: { rack: r9 }',
    ];
    const yaml = file(admin, 'machines.yml', ['machines:', ...entry, '  - name: no-credentials', '    host: 127.0.0.1', '    user: root', ''].join('\n'));
    const first = await admin.run(['machines', 'import', yaml]);
    expect(first.code, first.stderr).toBe(1);
    expect(first.stdout).toMatch(/^created 1, updated 0, refused 1$/m);
    expect(first.stdout).toMatch(/^1 +no-credentials +\/machines\/1/m);
    expect(first.stdout).not.toContain(machine.rootPassword);

    const again = file(admin, 'again.yml', ['machines:', ...entry, ''].join('\n'));
    expect(await admin.json(['machines', 'import', again])).toEqual({ created: 0, updated: 1, errors: [] });
    const listed = await admin.json(['machines', '--type', 'lab', '--tag', 'rack=r9']);
    expect(listed).toMatchObject([{ name: 'imported-1', port: machine.port, tags: { rack: 'r9' } }]);
    expect(JSON.stringify(listed)).not.toContain(machine.rootPassword);
  });

  it('checks a machine over SSH, takes it into maintenance and back', async () => {
    const check = await admin.ok(['machines', 'check', 'imported-1']);
    expect(check).toMatch(/^reachable: +yes$/m);
    expect(check).toMatch(/^host key: +SHA256:/m);
    expect((await admin.run(['machines', 'maintenance', 'imported-1', 'on'])).code).toBe(2); // no --reason
    expect(await admin.ok(['machines', 'maintenance', 'imported-1', 'on', '--reason', 'new disk'])).toBe('imported-1 is maintenance (new disk)\n');
    expect((await admin.json(['machines', '--status', 'maintenance']))[0].name).toBe('imported-1');
    expect(await admin.ok(['machines', 'maintenance', 'imported-1', 'off'])).toBe('imported-1 is available\n');
  });

  it('adds a machine with a private key and a pinned host key, and removes machines', async () => {
    const key = file(admin, 'root_key', rootKey.private);
    const hostKey = file(admin, 'host.pub', `${machine.hostKey}\n`);
    const added = await admin.json([
      'machines', 'add', 'added-1', '--host', '127.0.0.1', '--port', String(machine.port), '--user', 'root',
      '--private-key', key, '--host-key', hostKey, '--tag', 'role=spare', '--no-sudo',
    ]);
    expect(added).toMatchObject({ name: 'added-1', status: 'available', allow_sudo: false, tags: { role: 'spare' } });
    expect(added.host_key_fingerprint).toMatch(/^SHA256:/);
    expect((await admin.json(['machines', 'check', 'added-1'])).reachable).toBe(true);
    expect(await admin.ok(['machines', 'rm', 'added-1'])).toBe('removed added-1\n');
    const gone = await admin.run(['machines', 'show', 'added-1']);
    expect(gone.code).toBe(4);
    expect(gone.stderr).toMatch(/^berth: machine_not_found: /);
  });
});

describe('users, as an admin', () => {
  it('creates, lists, disables, enables and deletes a user, who sees each change', async () => {
    expect(await admin.ok(['users', 'create', 'bob', '--email', 'bob@example.com'], { input: `${PASSWORD}\n` })).toBe('created user bob\n');
    expect(await admin.ok(['users', '-q', 'bob'])).toMatch(/^bob +user +bob@example\.com +no +/m);
    await bob.ok(['login', 'bob'], { input: `${PASSWORD}\n` });
    const notAdmin = await bob.run(['users']);
    expect(notAdmin.code).toBe(4);
    expect(notAdmin.stderr).toMatch(/^berth: admin_required: /);

    expect(await admin.ok(['users', 'disable', 'bob'])).toBe('bob disabled\n');
    expect((await bob.run(['whoami'])).code).toBe(3);
    const refused = await bob.run(['login', 'bob'], { input: `${PASSWORD}\n` });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^berth: account_disabled: /);
    expect(await admin.ok(['users', 'enable', 'bob'])).toBe('bob enabled\n');
    await bob.ok(['login', 'bob'], { input: `${PASSWORD}\n` });

    expect(await admin.ok(['users', 'delete', 'bob'])).toBe('deleted bob\n');
    expect((await bob.run(['whoami'])).code).toBe(3);
    expect((await admin.run(['users', 'delete', 'bob'])).code).toBe(4);
  });
});

describe('images and VMs, as an admin', () => {
  it(
    'builds an image from a directory (minus .dockerignore), following the log live, and ends with its status',
    async () => {
      const dir = path.join(admin.home, 'devbox');
      file(admin, 'devbox/Dockerfile', [`FROM ${BASE_IMAGE}`, 'COPY . /context/', 'RUN test -f /context/motd && test ! -e /context/secret.txt', 'RUN echo halfway && sleep 3 && cp /context/motd /etc/motd'].join('\n'));
      file(admin, 'devbox/motd', 'built by the berth command line\n');
      file(admin, 'devbox/secret.txt', 'kept out of the context\n');
      file(admin, 'devbox/.dockerignore', 'secret.txt\n');
      let halfwayAt = 0;
      const build = await admin.run(['images', 'build', dir, '--name', 'cli-devbox'], {
        onStdout: (chunk) => (halfwayAt ||= chunk.includes('halfway') ? Date.now() : 0),
      });
      const endedAt = Date.now();
      expect(build.stderr).toBe('');
      expect(build.code).toBe(0);
      expect(build.stdout).toMatch(/^Step 1\/4 : FROM berth\/debian-sshd:bookworm$/m);
      expect(build.stdout).toMatch(/^Step 4\/4 : RUN echo halfway && sleep 3 && cp \/context\/motd \/etc\/motd$/m);
      // Live: the step's output arrived while it still slept, not with the rest at the end.
      expect(halfwayAt).toBeGreaterThan(0);
      expect(endedAt - halfwayAt).toBeGreaterThan(2_500);
      expect(build.stdout).toMatch(/\nimage cli-devbox ready: \d+(\.\d)? MiB, built in [\d.]+ m?s, converted in [\d.]+ m?s\n$/);
      expect(await admin.json(['images', 'show', 'cli-devbox'])).toMatchObject({ name: 'cli-devbox', status: 'ready', pool_size: 0 });
    },
    SLOW_MS,
  );

  it('a failing build ends with exit 1 and the reason; --json keeps stdout to the image', async () => {
    const dockerfile = file(admin, 'broken/Dockerfile', [`FROM ${BASE_IMAGE}`, 'RUN echo about to fail && exit 3'].join('\n'));
    const r = await admin.run(['--json', 'images', 'build', dockerfile, '--name', 'cli-broken']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('about to fail'); // the log, on stderr with --json
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'cli-broken', status: 'failed' });
    expect(await admin.ok(['images'])).toMatch(/^cli-broken +failed /m);
  }, SLOW_MS);

  it(
    'sets a pool of one VM and waits until it runs; a reservation of it is logged in to with berth ssh',
    async () => {
      const set = await admin.run(['pool', 'set', 'cli-devbox', '1']);
      expect(set.code, set.stderr).toBe(0);
      expect(set.stdout).toMatch(/^cli-devbox: pool of 1, all running$/m);
      const [vm] = await admin.json(['vms', '--image', 'cli-devbox']);
      expect(vm).toMatchObject({ state: 'running', machine_status: 'available' });
      expect(await admin.ok(['vms'])).toMatch(new RegExp(`^${vm.name} +cli-devbox +running +available +127\\.0\\.0\\.1:${vm.ssh.port} `, 'm'));
      expect((await admin.ok(['vms', 'console', vm.name])).length).toBeGreaterThan(0);

      const keyFile = path.join(admin.home, 'id_ed25519');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
      const reservation = await admin.json(['reserve', '--type', 'vm', '--tag', 'image=cli-devbox', '--for', '15m', '--key', `${keyFile}.pub`, '--username', 'tester']);
      const ssh = await admin.run(['ssh', '-i', keyFile, '-F', '/dev/null', '-o', 'BatchMode=yes', reservation.id, '--', 'id -un; cat /etc/motd']);
      expect(ssh.stderr).toBe('');
      expect(ssh.stdout).toBe('tester\nbuilt by the berth command line\n');
      expect(await admin.ok(['release', reservation.id.slice(0, 8)])).toContain('released');
    },
    SLOW_MS,
  );

  it(
    'resets, stops, starts and deletes a VM, then empties the pool (waiting for it), and deletes the images',
    async () => {
      const [vm] = await admin.json(['vms', '--image', 'cli-devbox']);
      expect(await admin.ok(['vms', 'reset', vm.name])).toMatch(new RegExp(`^${vm.name} reset \\((booting|running)\\)\n$`));
      expect(await admin.ok(['vms', 'stop', vm.id])).toBe(`${vm.name} stopped (stopped)\n`);
      expect((await admin.json(['vms', 'start', vm.name]))[0]).toMatchObject({ name: vm.name, state: 'booting' });
      expect(await admin.ok(['vms', 'rm', vm.name])).toBe(`deleted ${vm.name}\n`);
      expect((await admin.json(['vms'])).map((v: { id: string }) => v.id)).not.toContain(vm.id);
      expect(await admin.ok(['pool', 'set', 'cli-devbox', '0'])).toBe('cli-devbox: pool of 0, emptied\n');
      expect(await admin.json(['vms'])).toEqual([]);
      expect(await admin.ok(['images', 'rm', 'cli-devbox', 'cli-broken'])).toBe('deleted cli-devbox\ndeleted cli-broken\n');
      expect(await admin.ok(['images'])).toBe('no images\n');
    },
    SLOW_MS,
  );
});
