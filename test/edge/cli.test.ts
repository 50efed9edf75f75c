// The `berth` command line as a person (or a script) uses it: the real binary, as a
// subprocess, against a real berth over HTTPS through Caddy, with a real sshd machine and
// OpenSSH: log in, reserve, ssh in, extend, release; the session kept as a refresh token
// only, shared safely by parallel runs, and a clear "log in again" when it has ended.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { knownHostsFromAnswer, linesWithFingerprint, fingerprintOf } from '../../clients/cli/src/ssh/known-hosts.js';
import { createTestApp, PASSWORD, type TestApp } from '../helpers/app.js';
import { startCaddyFor, type Caddy } from '../helpers/caddy.js';
import { BERTH_BIN, cliUser, type CliUser } from '../helpers/cli.js';
import { watchedForSecrets } from '../helpers/cli-secrets.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';

// Every command is a Node process of its own: seconds each when the machine is busy.
vi.setConfig({ testTimeout: 180_000 });

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

let pool: Pool;
let caddy: Caddy;
let alice: CliUser;
let sshKey: string;

beforeAll(async () => {
  pool = await createPool(1, { BERTH_TRUST_PROXY: '127.0.0.1' }, 'cli');
  caddy = await startCaddyFor(pool.t.app);
  // Every command alice runs is checked for her password and her session's tokens.
  alice = watchedForSecrets(cliUser({ url: caddy.url, caPath: caddy.rootPath }), { 'her password': PASSWORD });
  sshKey = path.join(alice.home, '.ssh', 'id_ed25519');
  fs.mkdirSync(path.dirname(sshKey), { mode: 0o700 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@cli-test', '-f', sshKey]);
});
afterAll(async () => {
  await caddy?.stop();
  await pool?.close();
  alice?.remove();
});

/** OpenSSH as the test runs it: this key only, no ~/.ssh/config, never a password prompt. */
const sshFlags = () => ['-i', sshKey, '-F', '/dev/null', '-o', 'BatchMode=yes'];

const sessions = (user: CliUser) => JSON.parse(fs.readFileSync(user.sessionsFile, 'utf8')) as { servers: Record<string, { refresh_token: string; session_id: string }> };

describe('berth before logging in', () => {
  it('refuses a server whose certificate it cannot verify (exit 5): no CA given, no trust', async () => {
    const stranger = cliUser({ url: caddy.url });
    try {
      const r = await stranger.run(['login', 'alice'], { input: `${PASSWORD}\n` });
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/^berth: cannot reach https:\/\/localhost:\d+: .*certificate/);
    } finally {
      stranger.remove();
    }
  });

  it('gives usage errors exit 2, with the reason on one line', async () => {
    const cases: [string[], RegExp][] = [
      [['reserve', '--for', '2x'], /option '--for <duration>' argument '2x' is invalid/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['extend', 'abcd'], /required option '--by <duration>' not specified/],
      [['reserve', '--count', '2', '--machine', 'x'], /cannot be used with option/],
      [['--url', 'http://berth.example.com', 'whoami'], /refusing plain http/],
      [['machines', '--status', 'busy'], /Allowed choices are available, reserved, maintenance, offline/],
      [['reserve', '--at', '2026-02-30 09:00'], /option '--at <time>' argument '2026-02-30 09:00' is invalid\. .* is not a valid date and time/],
      [['reserve', '--at', 'tomorrow'], /argument 'tomorrow' is invalid\. use RFC 3339 .* or a local time/],
      [['reserve', '--wait', '10m', '--at', '2026-12-09 09:00'], /option '--wait <duration>' cannot be used with option '--at <time>'/],
      [['reserve', '--wait', '0'], /option '--wait <duration>' argument '0' is invalid/],
      [['reserve', '--follow'], /--follow waits for a queued or booked reservation: add --wait or --at/],
      [['reservations', '--status', 'waiting'], /Allowed choices are queued, scheduled, provisioning, active, releasing, released, failed, any/],
      [['cancel'], /missing required argument 'id'/],
    ];
    for (const [args, message] of cases) {
      const r = await alice.run(args);
      expect(r.code, `berth ${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split('\n')[0]).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });

  it('says "not logged in" with the auth exit code (3)', async () => {
    const r = await alice.run(['whoami']);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`berth: not logged in to ${caddy.url}: run \`berth login\`\n`);
  });

  it('has --help with examples on every command, and the exit codes at the top (exit 0)', async () => {
    const top = await alice.ok(['--help']);
    expect(top).toContain('Exit codes:');
    expect(top).toMatch(/3 +authentication/);
    // Every command and subcommand, found by walking the help itself.
    const commandsIn = (help: string) =>
      (help.split('\nCommands:\n')[1] ?? '')
        .split('\n\n')[0]!
        .split('\n')
        .map((line) => /^ {2}([a-z-]+)/.exec(line)?.[1])
        .filter((name): name is string => Boolean(name) && name !== 'help');
    const seen: string[] = [];
    const withoutExamples: string[] = [];
    let level = commandsIn(top).map((c) => [c]);
    while (level.length) {
      const helps = await Promise.all(level.map((path) => alice.ok([...path, '--help'])));
      const next: string[][] = [];
      helps.forEach((help, i) => {
        const path = level[i]!.join(' ');
        seen.push(path);
        expect(help, path).toContain(`Usage: berth ${path}`);
        if (!new RegExp(`Examples:\\n(.*\\n)*  berth ${path}`).test(help)) withoutExamples.push(path);
        next.push(...commandsIn(help).map((c) => [...level[i]!, c]));
      });
      level = next;
    }
    expect(withoutExamples).toEqual([]);
    expect(seen).toEqual(expect.arrayContaining(['login', 'reserve', 'cancel', 'ssh', 'machines import', 'images build', 'pool set', 'vms console', 'users create']));
    expect(seen.length).toBeGreaterThan(40);
  });
});

describe("a user's day with berth", () => {
  let reservationId = '';

  it('registers and logs in with the password on stdin; keeps only a refresh token, in a 0600 file', async () => {
    expect(await alice.ok(['register', 'alice'], { input: `${PASSWORD}\n` })).toContain('registered alice');
    const wrong = await alice.run(['login', 'alice'], { input: 'not the password\n' });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/^berth: invalid_credentials: /);
    const login = await alice.run(['login', 'alice'], { input: `${PASSWORD}\n` });
    expect(login.code).toBe(0);
    expect(login.stdout).toBe(`logged in to ${caddy.url} as alice\n`);

    expect(fs.statSync(alice.sessionsFile).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(alice.sessionsFile)).mode & 0o777).toBe(0o700);
    const text = fs.readFileSync(alice.sessionsFile, 'utf8');
    expect(sessions(alice).servers[caddy.url]!.refresh_token).toMatch(/^brt_/);
    expect(text).not.toContain('eyJ'); // no access token (a JWT) is ever written
    expect(text).not.toContain(PASSWORD);
    for (const out of [login.stdout, login.stderr]) expect(out).not.toMatch(/brt_|eyJ/);
  });

  it('whoami, machines and pool print tables, and JSON that parses with --json', async () => {
    const who = await alice.ok(['whoami']);
    expect(who).toMatch(/^username: +alice$/m);
    expect(who).toMatch(/^role: +user$/m);
    expect((await alice.json(['whoami'])).username).toBe('alice');

    const machine = pool.machines[0]!;
    const table = (await alice.ok(['machines'])).split('\n');
    expect(table[0]).toMatch(/^NAME +TYPE +STATUS +HOST +PORT +TAGS +REASON$/);
    expect(table[1]).toMatch(new RegExp(`^${machine.name} +server +available +127\\.0\\.0\\.1 +${machine.port}`));
    const listed = await alice.json(['machines', '--status', 'available']);
    expect(listed.map((m: { name: string }) => m.name)).toEqual([machine.name]);
    expect(await alice.ok(['machines', '--status', 'reserved'])).toBe('no machines match\n');
    expect(await alice.json(['pool'])).toMatchObject({ total: 1, available: 1 });
    expect(await alice.ok(['pool'])).toMatch(/^\(all\) +1 +1 +0 +0 +0 +0$/m);
  });

  it('reserves a real machine with a key, and `berth ssh ID -- id -un` logs in with the pinned host key', async () => {
    const out = await alice.ok(['reserve', '--for', '30m', '--key', `${sshKey}.pub`]);
    reservationId = UUID.exec(out)![0];
    expect(out).toMatch(new RegExp(`^reservation ${reservationId} active until .* \\((29|30)m left\\)$`, 'm'));
    expect(out).toMatch(/^account: +alice$/m);
    expect(out).not.toContain('password'); // a key was given: berth generated no password
    expect(out).toContain(`berth ssh ${reservationId.slice(0, 8)}`);

    const list = await alice.ok(['reservations']);
    expect(list).toMatch(new RegExp(`^${reservationId.slice(0, 8)} +active +${pool.machines[0]!.name} +alice +\\S+ \\S+ +(29|30)m$`, 'm'));

    const ssh = await alice.run(['ssh', ...sshFlags(), reservationId.slice(0, 8), '--', 'id', '-un']);
    expect(ssh.stderr).toBe('');
    expect(ssh.stdout).toBe('alice\n');
    expect(ssh.code).toBe(0);
    // The remote command's status is berth's, and the machine can be named.
    const status = await alice.run(['ssh', ...sshFlags(), reservationId, pool.machines[0]!.name, '--', 'exit 7']);
    expect(status.code).toBe(7);
    const unknown = await alice.run(['ssh', ...sshFlags(), reservationId, 'no-such-machine']);
    expect(unknown.code).toBe(2);
  });

  it("refuses a host from berth's answer that ssh would read as an option, and runs neither ssh nor ssh-keyscan", async () => {
    // The server refuses such hosts (test/hardening/machine-hosts.test.ts): a compromised or
    // impostor server is what sends one, made here by writing the database.
    const marker = path.join(alice.home, 'proxy-command-ran');
    const spied = path.join(alice.home, 'spy');
    const calls = path.join(spied, 'calls');
    fs.mkdirSync(spied);
    // ssh and ssh-keyscan as found on PATH, recording each run before doing it.
    for (const tool of ['ssh', 'ssh-keyscan']) {
      const real = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
      fs.writeFileSync(path.join(spied, tool), `#!/bin/sh\necho "${tool} $*" >> '${calls}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
    }
    const machine = pool.machines[0]!;
    const before = await pool.t.prisma.machine.findUniqueOrThrow({ where: { name: machine.name } });
    const env = { PATH: `${spied}:${alice.env.PATH}` };
    try {
      // With the host key in the answer, berth ssh would go straight to ssh; without it, to ssh-keyscan first.
      for (const hostKey of [before.hostKey, null]) {
        await pool.t.prisma.machine.update({ where: { name: machine.name }, data: { host: `-oProxyCommand=touch ${marker}`, hostKey } });
        const r = await alice.run(['ssh', ...sshFlags(), reservationId, '--', 'true'], { env });
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toBe(
          `berth: berth named "-oProxyCommand=touch ${marker}" as the host of ${machine.name}, which is not a host name or an IP address: refusing to run ssh\n`,
        );
        expect(fs.existsSync(marker)).toBe(false);
        expect(fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8') : '').toBe('');
      }
    } finally {
      await pool.t.prisma.machine.update({ where: { name: machine.name }, data: { host: before.host, hostKey: before.hostKey } });
    }
    // The same spies see the ordinary login: options end with `--` before the host.
    const ok = await alice.run(['ssh', ...sshFlags(), reservationId, '--', 'id', '-un'], { env });
    expect(ok.stdout).toBe('alice\n');
    expect(fs.readFileSync(calls, 'utf8')).toMatch(new RegExp(`^ssh .* -- ${machine.host.replace(/\./g, '\\.')} id -un\n$`));
  });

  it('extends the reservation (--json parses and shows the new end)', async () => {
    const before = await alice.json(['reservations', 'show', reservationId.slice(0, 6)]);
    expect(await alice.ok(['extend', reservationId.slice(0, 8), '--by', '30m'])).toMatch(/now ends .* \(in (59|60)m\)/);
    const after = await alice.json(['reservations', 'show', reservationId]);
    expect(Date.parse(after.expires_at) - Date.parse(before.expires_at)).toBe(30 * 60_000);
    const tooLong = await alice.run(['extend', reservationId, '--by', '2d']);
    expect(tooLong.code).toBe(4);
    expect(tooLong.stderr).toMatch(/^berth: exceeds_max_duration: /);
  });

  it('a full pool is a refusal: one line with the code, exit 4', async () => {
    const r = await alice.run(['reserve']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^berth: insufficient_capacity: .+\n$/);
    expect(r.stdout).toBe('');
  });

  it('releases by id prefix: the account is gone from the machine', async () => {
    expect(await alice.ok(['release', reservationId.slice(0, 8)])).toBe(`released ${reservationId.slice(0, 8)} (${pool.machines[0]!.name})\n`);
    expect(await accountExists(pool.machines[0]!, 'alice')).toBe(false);
    expect(await alice.ok(['reservations'])).toBe('no active, queued or scheduled reservations\n');
    expect((await alice.json(['reservations', '--status', 'any']))[0]).toMatchObject({ id: reservationId, status: 'released' });
  });

  it('prints a generated password once; release --all releases every reservation of mine', async () => {
    // --no-key: without it berth would send her ~/.ssh/id_ed25519.pub, and generate no password.
    const out = await alice.ok(['reserve', '--for', '1h30m', '--no-key']);
    const password = /^password: +(\S+) +\(shown only now\)$/m.exec(out)?.[1];
    expect(password).toMatch(/^\S{12,}$/);
    const listed = await alice.ok(['--json', 'reservations']);
    expect(listed).not.toContain(password!);
    expect(JSON.parse(listed)[0].duration_minutes).toBe(90);
    const released = await alice.json(['release', '--all']);
    expect(released).toHaveLength(1);
    expect(released[0].status).toBe('released');
    expect(await alice.ok(['release', '--all'])).toBe('no active reservations to release\n');
  });

  it('runs four commands at once on one session without tripping refresh-token reuse detection', async () => {
    const runs = await Promise.all(Array.from({ length: 4 }, () => alice.run(['whoami', '--json'])));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(new Set(runs.map((r) => JSON.parse(r.stdout).session_id)).size).toBe(1);
    expect((await alice.json(['whoami'])).username).toBe('alice');
  });
});

describe('the key berth reserve sends, and berth cancel', () => {
  const machine = () => pool.machines[0]!;
  /** The account's authorized_keys on the machine ('' when there is none). */
  const authorizedKeys = async (username: string) =>
    (await machine().sh(`cat "$(getent passwd ${username} | cut -d: -f6)/.ssh/authorized_keys" 2>/dev/null`)).out;

  it('sends ~/.ssh/id_ed25519.pub unless told otherwise (no password is made); cancel releases an active reservation', async () => {
    const out = await alice.ok(['reserve', '--for', '10m']);
    const id = UUID.exec(out)![0];
    expect(out).toMatch(new RegExp(`^key: +${`${sshKey}.pub`.replace(/[.]/g, '\\.')}$`, 'm'));
    expect(out).not.toContain('password');
    expect(await authorizedKeys('alice')).toBe(fs.readFileSync(`${sshKey}.pub`, 'utf8'));
    expect((await alice.run(['ssh', ...sshFlags(), id.slice(0, 8), '--', 'id', '-un'])).stdout).toBe('alice\n');

    const list = await alice.ok(['reservations']);
    expect(list.split('\n')[0]).toMatch(/^ID +STATUS +MACHINES +ACCOUNT +EXPIRES +LEFT$/); // no queue columns: nothing is queued
    expect(list).toMatch(new RegExp(`^${id.slice(0, 8)} +active +${machine().name} +alice +\\S+ \\S+ +(9|10)m$`, 'm'));

    expect(await alice.ok(['cancel', id.slice(0, 8)])).toBe(`released ${id.slice(0, 8)} (${machine().name}): it had started\n`);
    expect(await accountExists(machine(), 'alice')).toBe(false);
    expect(await alice.ok(['reservations'])).toBe('no active, queued or scheduled reservations\n');
    expect((await alice.json(['reservations', '--status', 'any']))[0]).toMatchObject({ id, status: 'released', release_reason: 'released' });
  });

  it("without that file sends the ssh-agent's first key, and berth ssh logs in through the agent alone; --no-key sends none", async () => {
    const dana = watchedForSecrets(cliUser({ url: caddy.url, caPath: caddy.rootPath }), { 'her password': PASSWORD });
    const agentDir = fs.mkdtempSync(path.join(dana.home, 'agent-'));
    const socket = path.join(agentDir, 'socket');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      const deadline = Date.now() + 10_000;
      while (!fs.existsSync(socket) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const env = { SSH_AUTH_SOCK: socket };
      // The key lives in the agent only: no file berth or ssh could read.
      const keyFile = path.join(agentDir, 'key');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'dana@agent', '-f', keyFile]);
      execFileSync('ssh-add', ['-q', keyFile], { env: { ...process.env, ...env }, stdio: 'ignore' });
      const agentKey = fs.readFileSync(`${keyFile}.pub`, 'utf8');
      fs.rmSync(keyFile);
      fs.rmSync(`${keyFile}.pub`);

      await dana.ok(['register', 'dana'], { input: `${PASSWORD}\n` });
      await dana.ok(['login', 'dana'], { input: `${PASSWORD}\n` });
      const out = await dana.ok(['reserve', '--for', '10m'], { env });
      const id = UUID.exec(out)![0];
      expect(out).toMatch(/^key: +the ssh-agent's first key \(dana@agent\)$/m);
      expect(out).not.toContain('password');
      expect(await authorizedKeys('dana')).toBe(agentKey);
      const ssh = await dana.run(['ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', id, '--', 'id', '-un'], { env });
      expect(ssh.stdout, ssh.stderr).toBe('dana\n');
      await dana.ok(['release', id]);

      const noKey = await dana.ok(['reserve', '--for', '10m', '--no-key'], { env });
      expect(noKey).toMatch(/^password: +\S{12,} +\(shown only now\)$/m);
      expect(noKey).not.toMatch(/^key:/m);
      expect(await authorizedKeys('dana')).toBe('');
      await dana.ok(['release', '--all']);
    } finally {
      agent.kill();
      dana.remove();
    }
  });

  it('--password sends the password typed on stdin and no key; nothing prints it', async () => {
    const typed = 'a typed account password 7Qz';
    const out = await alice.ok(['reserve', '--for', '10m', '--password'], { input: `${typed}\n` });
    expect(out).not.toContain(typed);
    expect(out).not.toMatch(/^(password|key):/m);
    expect(await authorizedKeys('alice')).toBe('');
    expect((await machine().sh("getent shadow alice | cut -d: -f2")).out).toMatch(/^\$6\$/);
    await alice.ok(['release', '--all']);
  });
});

describe('sessions that end', () => {
  it('a session revoked on the server: "log in again", exit 3, and the dead token is forgotten', async () => {
    const { session_id } = await alice.json(['whoami']);
    const res = await pool.t.app.inject({ method: 'DELETE', url: `/v1/sessions/${session_id}`, headers: pool.admin.auth });
    expect(res.statusCode).toBe(204);
    const r = await alice.run(['whoami']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^berth: your session at https:\/\/localhost:\d+ has ended \(\w+\): log in again with `berth login`\n$/);
    expect(fs.existsSync(alice.sessionsFile)).toBe(false);
  });

  it('a copied refresh token used after the original: the server revokes the session, berth says log in again', async () => {
    await alice.ok(['login', 'alice'], { input: `${PASSWORD}\n` });
    const copy = fs.readFileSync(alice.sessionsFile);
    await alice.ok(['whoami']); // rotates the refresh token
    const rotated = fs.readFileSync(alice.sessionsFile);
    fs.writeFileSync(alice.sessionsFile, copy);
    const reused = await alice.run(['whoami']);
    expect(reused.code).toBe(3);
    expect(reused.stderr).toMatch(/has ended \(refresh_token_reused\): log in again/);
    // The newer token died with its session.
    fs.writeFileSync(alice.sessionsFile, rotated, { mode: 0o600 });
    expect((await alice.run(['whoami'])).code).toBe(3);
  });

  it('an expired refresh token (a berth with a 2 s idle lifetime): log in again', async () => {
    let shortLived: TestApp | undefined;
    let edge: Caddy | undefined;
    const bob = await (async () => {
      shortLived = await createTestApp({ BERTH_REFRESH_IDLE_TTL_SECONDS: '2' });
      edge = await startCaddyFor(shortLived.app);
      return watchedForSecrets(cliUser({ url: edge.url, caPath: edge.rootPath }), { 'his password': PASSWORD });
    })();
    try {
      await bob.ok(['register', 'bob'], { input: `${PASSWORD}\n` });
      await bob.ok(['login', 'bob'], { input: `${PASSWORD}\n` });
      await new Promise((r) => setTimeout(r, 3_000));
      const r = await bob.run(['whoami']);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/has ended \(\w+\): log in again with `berth login`/);
    } finally {
      bob.remove();
      await edge?.stop();
      await shortLived?.close();
    }
  });

  it('logout ends the session on the server and removes the file', async () => {
    await alice.ok(['login', 'alice'], { input: `${PASSWORD}\n` });
    const token = sessions(alice).servers[caddy.url]!.refresh_token;
    expect(await alice.ok(['logout'])).toBe(`logged out of ${caddy.url}\n`);
    expect(fs.existsSync(alice.sessionsFile)).toBe(false);
    const refresh = await pool.t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: token } });
    expect(refresh.statusCode).toBe(401);
    expect(await alice.ok(['logout'])).toBe(`not logged in to ${caddy.url}\n`);
  });

  it('asks for the password on a terminal without echoing it', async () => {
    // script(1) gives berth a pseudo-terminal; the password is typed once the prompt shows.
    const child = spawn('script', ['-qec', `${BERTH_BIN} login alice`, '/dev/null'], { env: alice.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    child.stdout.on('data', (d) => (screen += d));
    const exited = new Promise<number>((resolve) => child.once('close', (code) => resolve(code ?? -1)));
    const deadline = Date.now() + 10_000;
    while (!screen.includes('password: ') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(screen).toContain('password: ');
    child.stdin.write(`${PASSWORD}\r`);
    expect(await exited).toBe(0);
    expect(screen).toContain('logged in to');
    expect(screen).not.toContain(PASSWORD);
    expect(screen).not.toMatch(/brt_|eyJ/);
    expect((await alice.json(['whoami'])).username).toBe('alice');
  });
});

describe('host keys for berth ssh', () => {
  it("computes fingerprints as ssh-keygen does, and keeps only the pinned key's lines", () => {
    const m = pool.machines[0]!;
    const file = path.join(alice.home, 'host.pub');
    fs.writeFileSync(file, `${m.hostKey}\n`);
    const keygen = execFileSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' }).split(' ')[1];
    expect(fingerprintOf(m.hostKey.split(' ')[1]!)).toBe(keygen);
    const line = `[127.0.0.1]:${m.port} ${m.hostKey}`;
    expect(linesWithFingerprint(`${line}\n[127.0.0.1]:${m.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHiyiJ4T3Jc8xH8uOK6IbZ7jvbT+9FoA4lZR0W3Vq0yA\n`, keygen!)).toMatchObject({
      matching: [line],
    });
  });

  // berth's answers carry known_hosts and host_key (the test below reserves and uses them);
  // here each form berth ssh reads, on made-up answers with the machine's real key.
  it('uses known_hosts or host_key from the answer when berth sends them', () => {
    const m = pool.machines[0]!;
    const machine = { name: m.name, host: '127.0.0.1', port: m.port };
    expect(knownHostsFromAnswer({}, machine)).toBeNull();
    expect(knownHostsFromAnswer({}, { ...machine, host_key: m.hostKey })).toBe(`[127.0.0.1]:${m.port} ${m.hostKey}\n`);
    expect(knownHostsFromAnswer({}, { ...machine, port: 22, host_key: m.hostKey })).toBe(`127.0.0.1 ${m.hostKey}\n`);
    expect(knownHostsFromAnswer({ known_hosts: `[127.0.0.1]:${m.port} ${m.hostKey}` }, { ...machine, host_key: 'ignored' })).toBe(
      `[127.0.0.1]:${m.port} ${m.hostKey}\n`,
    );
  });

  it('refuses to connect when the machine shows a key other than the pinned one (ssh exits 255)', async () => {
    const reservation = await alice.json(['reserve', '--for', '10m', '--key', `${sshKey}.pub`]);
    expect(reservation.known_hosts).toContain(reservation.machines[0].host_key);
    await pool.machines[0]!.replace(); // same address, new host key: an impostor as far as berth knows
    const r = await alice.run(['ssh', ...sshFlags(), reservation.id, '--', 'id', '-un']);
    // OpenSSH itself refuses, checking strictly against the known_hosts berth gave: no prompt, no login.
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect(r.stdout).toBe('');
  });
});
