// The command line's side of scheduling (issue 20), as a person uses it: the real `berth`
// binary against a real berth through Caddy, one real sshd machine that someone else holds.
// `reserve --wait` queues and says where it stands, `--follow` stays until a release lets
// the request start and then prints what a plain reserve prints, `--at` books ahead (a
// local time, sent as the same instant), `reservations` shows the queue's and bookings'
// columns, `cancel` takes a request out, and a full pool's refusal says when it could start.
// It needs the server's side of SCHEDULING-API.md (202 queued, scheduled, cancel).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PASSWORD, userSession, type Session } from '../helpers/app.js';
import { startCaddyFor, type Caddy } from '../helpers/caddy.js';
import { cliUser, type CliUser } from '../helpers/cli.js';
import { watchedForSecrets } from '../helpers/cli-secrets.js';
import { createPool, type Pool } from '../helpers/pool.js';

// Every command is a Node process of its own, and a queued request waits for the scheduler.
vi.setConfig({ testTimeout: 240_000 });

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
const LOCAL_TIME = /\d{4}-\d{2}-\d{2} \d{2}:\d{2}/.source;

let pool: Pool;
let caddy: Caddy;
let alice: CliUser;
let bob: Session;
let sshKey: string;

beforeAll(async () => {
  pool = await createPool(1, { BERTH_TRUST_PROXY: '127.0.0.1', BERTH_SCHEDULER_INTERVAL_SECONDS: '1' }, 'clisched');
  caddy = await startCaddyFor(pool.t.app);
  alice = watchedForSecrets(cliUser({ url: caddy.url, caPath: caddy.rootPath }), { 'her password': PASSWORD });
  sshKey = path.join(alice.home, '.ssh', 'id_ed25519');
  fs.mkdirSync(path.dirname(sshKey), { mode: 0o700 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@cli-scheduling', '-f', sshKey]);
  await alice.ok(['register', 'alice'], { input: `${PASSWORD}\n` });
  await alice.ok(['login', 'alice'], { input: `${PASSWORD}\n` });
  bob = await userSession(pool.t, 'bob');
});
afterAll(async () => {
  await caddy?.stop();
  await pool?.close();
  alice?.remove();
});

/** Bob takes the pool's one machine (for half an hour): whatever alice asks for now must wait. */
async function bobHoldsTheMachine(): Promise<string> {
  const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: bob.auth, payload: { count: 1, duration_minutes: 30 } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function bobReleases(id: string): Promise<void> {
  const res = await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: bob.auth });
  expect(res.statusCode, res.body).toBe(200);
}

/** Runs `berth ARGS` in the background; `seen(text)` resolves once its stdout shows `text`. */
function runInBackground(args: string[]) {
  let stdout = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const done = alice.run(args, {
    onStdout: (chunk) => {
      stdout += chunk;
      for (const w of waiters.filter((w) => stdout.includes(w.text))) w.resolve();
    },
  });
  const seen = (text: string) =>
    Promise.race([
      new Promise<void>((resolve) => (stdout.includes(text) ? resolve() : waiters.push({ text, resolve }))),
      done.then((r) => {
        throw new Error(`berth ${args.join(' ')} ended (${r.code}) before printing ${text}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      }),
    ]);
  return { done, seen };
}

/** `2026-12-09 09:00` for tomorrow at 09:00 in this machine's time zone, and that instant. */
function tomorrowAtNine(): { typed: string; instant: Date } {
  const d = new Date();
  const instant = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1, 9, 0, 0, 0);
  const two = (n: number) => String(n).padStart(2, '0');
  return { typed: `${instant.getFullYear()}-${two(instant.getMonth() + 1)}-${two(instant.getDate())} 09:00`, instant };
}

describe('berth reserve when the pool is full', () => {
  let bobsReservation = '';
  beforeAll(async () => {
    bobsReservation = await bobHoldsTheMachine();
  });

  it('is refused with exit 4, and the refusal says when it could start and how to wait or book', async () => {
    const r = await alice.run(['reserve']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`^berth: insufficient_capacity: .*; it could start at ${LOCAL_TIME}: add --wait DURATION to queue for it, or --at "${LOCAL_TIME}" to book it\\n$`));
  });

  it('--wait queues: its position and estimate; reservations shows the queue columns; cancel takes it out', async () => {
    const out = await alice.ok(['reserve', '--wait', '10m', '--for', '10m']);
    expect(out).toMatch(new RegExp(`^queued: position 1, estimated start (${LOCAL_TIME}|unknown)$`, 'm'));
    const id = UUID.exec(out)![0];
    const short = id.slice(0, 8);
    expect(out).toContain(`berth cancel ${short}`);
    expect(await alice.json(['reservations', 'show', short])).toMatchObject({ id, status: 'queued', queue_position: 1, machines: [] });

    const table = (await alice.ok(['reservations'])).split('\n');
    expect(table[0]).toMatch(/^ID +STATUS +MACHINES +ACCOUNT +POSITION +ESTIMATED_START +START_AT +EXPIRES +LEFT$/);
    expect(table).toContainEqual(expect.stringMatching(new RegExp(`^${short} +queued +- +alice +1 +(${LOCAL_TIME}|unknown) +- +- +-$`)));

    expect(await alice.ok(['cancel', short])).toBe(`cancelled ${short}: it will not start\n`);
    expect(await alice.json(['reservations', 'show', id])).toMatchObject({ status: 'released', release_reason: 'cancelled' });
    expect(await alice.ok(['reservations'])).toBe('no active, queued or scheduled reservations\n');
  });

  it('--wait --follow stays until a release lets it start, prints what reserve prints, and berth ssh logs in with the default key', async () => {
    const follow = runInBackground(['reserve', '--wait', '10m', '--for', '10m', '--follow']);
    await follow.seen('queued: position 1');
    await bobReleases(bobsReservation);
    const r = await follow.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^queued: position 1, /m);
    expect(r.stdout).toMatch(/^reservation [0-9a-f-]{36} active until .* \((9|10)m left\)$/m);
    expect(r.stdout).toMatch(new RegExp(`^key: +${`${sshKey}.pub`.replace(/[.]/g, '\\.')}$`, 'm'));
    const id = UUID.exec(r.stdout)![0];
    const ssh = await alice.run(['ssh', '-i', sshKey, '-F', '/dev/null', '-o', 'BatchMode=yes', id, '--', 'id', '-un']);
    expect(ssh.stdout, ssh.stderr).toBe('alice\n');

    // Queued behind her own reservation with no key: the password berth generated is shown
    // once the request starts, by the follow that saw it start.
    const second = runInBackground(['reserve', '--wait', '10m', '--for', '10m', '--no-key', '--follow']);
    await second.seen('queued: position 1');
    await alice.ok(['release', id]);
    const started = await second.done;
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/^password: +\S{12,} +\(shown only now\)$/m);
    const secondId = UUID.exec(started.stdout)![0];
    expect((await alice.json(['reservations', 'show', secondId])).account.password).toBeUndefined();
    await alice.ok(['release', '--all']);
  });

  it('--follow ends with exit 4 when the wait runs out before any machine is free', async () => {
    const held = await bobHoldsTheMachine();
    try {
      const following = alice.run(['reserve', '--wait', '1', '--follow']);
      // A minute's wait, brought to its end rather than sat through: once the request is queued.
      const queued = () => pool.t.prisma.reservation.findFirst({ where: { status: 'queued', ownerUsername: 'alice' } });
      await expect.poll(queued, { timeout: 30_000, interval: 200 }).not.toBeNull();
      await pool.t.prisma.reservation.update({ where: { id: (await queued())!.id }, data: { waitUntil: new Date(Date.now() - 1000) } });
      const r = await following;
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toMatch(/^berth: reservation [0-9a-f]{8} gave up waiting: no machines were free by /m);
    } finally {
      await bobReleases(held);
    }
  });
});

describe('berth reserve --at', () => {
  it('books the machines from a local time (sent as that instant); reservations shows its start; cancel', async () => {
    const { typed, instant } = tomorrowAtNine();
    const out = await alice.ok(['reserve', '--at', typed, '--for', '1h']);
    expect(out).toMatch(new RegExp(`^reservation [0-9a-f-]{36} scheduled from ${typed} to ${typed.replace('09:00', '10:00')}$`, 'm'));
    expect(out).toMatch(new RegExp(`^${pool.machines[0]!.name} +`, 'm')); // the planned machine
    const id = UUID.exec(out)![0];
    const short = id.slice(0, 8);
    const booked = await alice.json(['reservations', 'show', id]);
    expect(booked).toMatchObject({ status: 'scheduled' });
    expect(Date.parse(booked.start_at)).toBe(instant.getTime());

    const table = (await alice.ok(['reservations'])).split('\n');
    expect(table[0]).toMatch(/START_AT/);
    expect(table).toContainEqual(expect.stringMatching(new RegExp(`^${short} +scheduled +${pool.machines[0]!.name} +alice +- +- +${typed} `)));

    expect(await alice.ok(['cancel', short])).toBe(`cancelled ${short}: it will not start\n`);
    expect(await alice.json(['reservations', 'show', id])).toMatchObject({ status: 'released', release_reason: 'cancelled' });
  });

  it('takes RFC 3339 too, and --json prints the booking as berth answered it', async () => {
    const start = new Date(Date.now() + 2 * 86_400_000);
    start.setUTCHours(7, 30, 0, 0);
    const booked = await alice.json(['reserve', '--at', start.toISOString().replace('.000Z', '+00:00'), '--for', '30m']);
    expect(booked).toMatchObject({ status: 'scheduled' });
    expect(Date.parse(booked.start_at)).toBe(start.getTime());
    await alice.ok(['cancel', booked.id]);
  });
});
