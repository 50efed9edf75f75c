// bench/scheduling: the scheduler of issue 20 (queue, bookings, availability) on real sshd
// machines and berth's embedded MariaDB, each figure against a reference taken in the same run:
//   1. a full pool with 200 queued requests: a release → the next queued request active,
//      against the plain allocation of the same request on a free pool (POST → 201);
//   2. a scheduler tick with 10,000 future bookings in the database (nothing due, a few
//      due, a few queued), and an allocation with them, against the same without them;
//   3. GET /v1/pool/availability for a 100-machine pool over a week, against
//      GET /v1/machines?limit=100 on the same pool.
// berth runs in this process (as the tests build it, listening on a port), so that a tick can
// be timed through `app.jobs.runNow('scheduler')` and a reservation's activation heard on its
// event stream the moment it commits; requests go over HTTP. The background scheduler only
// runs when nudged (a release) or asked: its interval is an hour.
//   npm run bench:scheduling
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mariadb from 'mariadb';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/infra/open-database.js';
import { generateSshKeyPair } from '../../src/infra/ssh.js';
import { Keyring } from '../../src/modules/identity/keyring.js';
import { createPasswordHasher } from '../../src/modules/identity/passwords.js';
import type { SchedulerTick } from '../../src/modules/reservations/scheduler.js';
import { ensureAdmin } from '../../src/modules/users/bootstrap.js';
import { callJson } from '../../test/helpers/server-process.js';
import { removeAllTestMachines, rootKey, startMachines } from '../../test/helpers/ssh-machines.js';
import { seedMachines } from '../reads/seed.js';
import { seedBookings } from './seed.js';

/** sshd containers: QUEUE_POOL that the queue waits for, and one spare nobody queues for. */
const QUEUE_POOL = 12;
const QUEUED = 200;
const RELEASES = Number(process.env.BENCH_RELEASES ?? 100);
const REFERENCE_RUNS = 30;
/** The pool of parts 2 and 3: the sshd machines and seeded rows. */
const POOL = 100;
const BOOKINGS = 10_000;
const TICKS = 50;
const DUE_RUNS = 10;
const DUE = 3;
const READS = 200;
const PASSWORD = 'a benchmark passphrase';
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const here = path.dirname(new URL(import.meta.url).pathname);

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)]!;
/** Nearest rank: with fewer than 100 samples this is the largest. */
const p99 = (xs: number[]) => sorted(xs)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)]!;
const ms = (x: number) => (x < 10 ? x.toFixed(1) : x.toFixed(0));
const ratio = (x: number, ref: number) => `${(x / ref).toFixed(2)}×`;
const sleep = (t: number) => new Promise((resolve) => setTimeout(resolve, t));

async function timed<T>(work: () => Promise<T>, into: number[]): Promise<T> {
  const started = performance.now();
  const result = await work();
  into.push(performance.now() - started);
  return result;
}

async function main() {
  const loadBefore = os.loadavg();
  execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['scripts/build-base-image.sh', path.resolve('.data')], { stdio: 'inherit' });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-sched-'));
  const config = loadConfig({
    PATH: process.env.PATH,
    PORT: '0',
    LOG_LEVEL: 'warn',
    BERTH_DATA_DIR: dataDir,
    ADMIN_PASSWORD: PASSWORD,
    BERTH_VM_ACCEL: 'tcg', // no VMs here: skip the KVM probe
    BERTH_LOGIN_MAX_PER_IP: '100000',
    BERTH_RESERVATION_MAX_MACHINES_PER_USER: '1000',
    // Only nudges (a release) and this bench start a tick, so that each is timed alone.
    BERTH_SCHEDULER_INTERVAL_SECONDS: '3600',
    BERTH_EXPIRY_INTERVAL_SECONDS: '3600',
  });
  const [db, machines] = await Promise.all([openDatabase(config, () => {}), startMachines(QUEUE_POOL + 1, 'sched')]);
  const hasher = await createPasswordHasher(config.argon2);
  await ensureAdmin({ prisma: db.prisma, hasher }, { username: config.admin.username, password: PASSWORD, dataDir });
  const app = await buildApp(config, { prisma: db.prisma, keyring: Keyring.open(config.jwt.keysDir), hasher });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  const sql = await mariadb.createConnection({ socketPath: db.target.socketPath, user: db.target.user, database: db.target.database });
  const call = (method: string, url: string, token?: string, body?: unknown) => callJson(base, method, url, token, body);
  const tick = () => app.jobs.runNow<SchedulerTick>('scheduler');
  const lines: string[] = [];
  const say = (s: string) => {
    console.log(s);
    lines.push(s);
  };

  /** Resolves when `id` becomes active (heard on the event stream as the change commits); rejects if it fails. */
  const activations = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  app.events.on('reservation.changed', (e) => {
    const waiter = activations.get(e.reservationId);
    if (!waiter) return;
    if (e.to === 'active') waiter.resolve();
    if (e.to === 'failed' || e.to === 'released') waiter.reject(new Error(`${e.reservationId} went ${e.to}`));
  });
  const activation = (id: string) => new Promise<void>((resolve, reject) => activations.set(id, { resolve, reject })).finally(() => activations.delete(id));

  try {
    const admin = (await call('POST', '/v1/token', undefined, { username: config.admin.username, password: PASSWORD })).body.access_token;
    for (const [i, m] of machines.entries()) {
      const r = await call('POST', '/v1/machines', admin, {
        name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey,
        tags: { bench: i < QUEUE_POOL ? 'queue' : 'spare' },
      });
      if (r.status !== 201) throw new Error(`register ${m.name}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const userToken = async (username: string) => {
      await call('POST', '/v1/register', undefined, { username, password: PASSWORD });
      return (await call('POST', '/v1/token', undefined, { username, password: PASSWORD })).body.access_token as string;
    };
    const user = await userToken('bencher');
    const booker = await userToken('booker');
    // Who holds the seeded bookings (another user: per-user limits count booked machines).
    await userToken('lab');
    const key = generateSshKeyPair().public;
    const ask = (bench: 'queue' | 'spare', more: object = {}) => ({ count: 1, tags: { bench }, duration_minutes: 60, ssh_public_key: key, ...more });
    const reserve = async (body: object, expected: number, token = user) => {
      const r = await call('POST', '/v1/reservations', token, body);
      if (r.status !== expected) throw new Error(`reserve ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.id as string;
    };
    const release = async (id: string, token = user) => {
      const r = await call('DELETE', `/v1/reservations/${id}`, token);
      if (r.status !== 200) throw new Error(`release ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    };
    /** The plain allocation (POST → 201) and its release, `runs` times; the tick a release nudges is waited for. */
    const allocations = async (body: object, runs: number, into: { reserve: number[]; release?: number[] }) => {
      for (let i = 0; i < runs; i++) {
        const id = await timed(() => reserve(body, 201), into.reserve);
        await timed(() => release(id), into.release ?? []);
        await tick();
      }
    };
    await allocations(ask('queue'), 3, { reserve: [] }); // warm-up: JIT, pools, first contact with the machines

    // ---- 1. a full pool, 200 queued ----
    const reference = { reserve: [] as number[], release: [] as number[] };
    await allocations(ask('queue'), REFERENCE_RUNS / 2, reference);
    const active: string[] = [];
    for (let i = 0; i < QUEUE_POOL; i++) active.push(await reserve(ask('queue'), 201));
    const queued: string[] = [];
    for (let i = 0; i < QUEUED; i++) queued.push(await reserve(ask('queue', { wait_minutes: 600 }), 202));
    await tick();
    const releaseToActive: number[] = [];
    const releaseAnswered: number[] = [];
    const queueTicks: number[] = [];
    const spare = { reserve: [] as number[] };
    for (let i = 0; i < RELEASES; i++) {
      const victim = active.shift()!;
      const next = queued.shift()!;
      const activated = activation(next);
      const started = performance.now();
      await timed(() => release(victim), releaseAnswered);
      await activated;
      releaseToActive.push(performance.now() - started);
      active.push(next);
      await tick(); // the nudged tick and its repeats are over
      queued.push(await reserve(ask('queue', { wait_minutes: 600 }), 202));
      // With 200 queued for the other machines: a tick that can start nothing, and an allocation of the spare.
      await timed(tick, queueTicks);
      await allocations(ask('spare'), 1, spare);
    }
    for (const id of [...queued, ...active]) await release(id);
    await tick();
    await allocations(ask('queue'), REFERENCE_RUNS / 2, reference);

    const ref = median(reference.reserve);
    say('### 1. A full pool of 12 with 200 queued requests: a release → the next request active');
    say('');
    say('| measurement | n | median ms | p99 ms | median vs reference |');
    say('|---|---:|---:|---:|---:|');
    say(`| reference: POST /v1/reservations (1 machine) → 201 on a free pool, nothing queued | ${reference.reserve.length} | ${ms(ref)} | ${ms(p99(reference.reserve))} | 1.00× |`);
    say(`| DELETE of that reservation → 200, nothing queued | ${reference.release.length} | ${ms(median(reference.release))} | ${ms(p99(reference.release))} | ${ratio(median(reference.release), ref)} |`);
    say(`| **release → next queued request active** (DELETE sent → \`active\` committed) | ${releaseToActive.length} | ${ms(median(releaseToActive))} | ${ms(p99(releaseToActive))} | **${ratio(median(releaseToActive), ref)}** |`);
    say(`| … of which the DELETE → 200 | ${releaseAnswered.length} | ${ms(median(releaseAnswered))} | ${ms(p99(releaseAnswered))} | ${ratio(median(releaseAnswered), ref)} |`);
    say(`| scheduler tick, 200 queued, nothing can start | ${queueTicks.length} | ${ms(median(queueTicks))} | ${ms(p99(queueTicks))} | ${ratio(median(queueTicks), ref)} |`);
    say(`| POST → 201 on the spare machine with 200 queued for the others | ${spare.reserve.length} | ${ms(median(spare.reserve))} | ${ms(p99(spare.reserve))} | ${ratio(median(spare.reserve), ref)} |`);
    say('');
    say(`Release → active against the spare machine's allocation, measured between the releases (the same request, its own tag): ` +
      `**${ratio(median(releaseToActive), median(spare.reserve))}** (median), ${ratio(p99(releaseToActive), p99(spare.reserve))} (p99).`);
    say('');

    // ---- 2 and 3. 100 machines, then 10,000 bookings ----
    const seeded = POOL - machines.length;
    await seedMachines(sql, Array.from({ length: seeded }, (_, i) => `node-${String(i).padStart(3, '0')}`));
    const [lab] = (await sql.query("SELECT id, username FROM users WHERE username = 'lab'")) as { id: string; username: string }[];
    const realNames = machines.map((m) => m.name);
    const week = () => `from=${encodeURIComponent(new Date().toISOString())}&to=${encodeURIComponent(new Date(Date.now() + 7 * DAY).toISOString())}`;

    const phase = async () => {
      const idle: number[] = [];
      for (let i = 0; i < TICKS; i++) await timed(tick, idle);
      // A few bookings due: made through the API two seconds ahead, then the tick that starts them.
      const due: number[] = [];
      const plain = { reserve: [] as number[] };
      for (let i = 0; i < DUE_RUNS; i++) {
        const ids = await Promise.all(Array.from({ length: DUE }, () => reserve(ask('queue', { start_at: new Date(Date.now() + 2000).toISOString(), duration_minutes: 30 }), 201, booker)));
        await sleep(2100);
        const result = await timed(tick, due);
        if (result.started !== DUE) throw new Error(`a tick with ${DUE} bookings due started ${result.started}`);
        for (const id of ids) await release(id, booker);
        await tick();
        await allocations(ask('queue', { count: DUE }), 1, plain);
      }
      // A few queued for a machine someone holds: the tick plans the queue over the whole horizon.
      const held = await reserve({ machines: [realNames[0]], duration_minutes: 60, ssh_public_key: key }, 201);
      const waiting = [];
      for (let i = 0; i < 5; i++) waiting.push(await reserve({ machines: [realNames[0]], duration_minutes: 30, wait_minutes: 600, ssh_public_key: key }, 202));
      const queueTicks: number[] = [];
      for (let i = 0; i < TICKS; i++) await timed(tick, queueTicks);
      // An allocation while anything is queued plans the queue first: it reads the pool to the horizon.
      const behindQueue = { reserve: [] as number[] };
      await allocations(ask('spare'), REFERENCE_RUNS / 2, behindQueue);
      for (const id of [...waiting, held]) await release(id);
      await tick();
      const allocation = { reserve: [] as number[] };
      await allocations(ask('queue'), REFERENCE_RUNS, allocation);
      const availability: number[] = [];
      const machinesList: number[] = [];
      for (let i = 0; i < READS; i++) {
        const a = await timed(() => call('GET', `/v1/pool/availability?${week()}`, user), availability);
        const m = await timed(() => call('GET', '/v1/machines?limit=100', user), machinesList);
        if (a.status !== 200 || m.status !== 200) throw new Error(`reads: ${a.status} ${m.status}`);
      }
      return { idle, due, plain: plain.reserve, queueTicks, behindQueue: behindQueue.reserve, allocation: allocation.reserve, availability, machinesList };
    };
    await tick();
    const without = await phase();

    const seededStart = Date.now();
    const inPool = ((await sql.query("SELECT id FROM machines WHERE status = 'available' ORDER BY name")) as { id: string }[]).map((m) => m.id);
    // From three hours on (clear of what the bench reserves now) to the end of the 30-day booking horizon.
    await seedBookings(sql, lab!, inPool, { count: BOOKINGS, from: Date.now() + 3 * HOUR, to: Date.now() + 30 * DAY - HOUR });
    const seedSeconds = (Date.now() - seededStart) / 1000;
    const [{ inWeek }] = (await sql.query(
      "SELECT COUNT(*) AS inWeek FROM reservations WHERE status = 'scheduled' AND start_at < NOW(3) + INTERVAL 7 DAY",
    )) as [{ inWeek: bigint }];
    await tick();
    const withBookings = await phase();

    const row = (name: string, w: number[], b: number[], note = '') =>
      say(`| ${name} | ${w.length} | ${ms(median(w))} / ${ms(p99(w))} | ${ms(median(b))} / ${ms(p99(b))} | ${ratio(median(b), median(w))} | ${note} |`);
    say(`### 2. The scheduler with ${BOOKINGS.toLocaleString('en')} future bookings`);
    say('');
    say(`${POOL} machines (${machines.length} sshd containers, ${seeded} rows of which a tenth are offline or in maintenance); ` +
      `${BOOKINGS.toLocaleString('en')} bookings on the ${inPool.length} machines in the pool, over 30 days, none overlapping on a machine ` +
      `(written in ${seedSeconds.toFixed(1)} s; ${Number(inWeek)} of them start within a week). Each row measured without the bookings, then with them.`);
    say('');
    say('| measurement | n | without: median / p99 ms | with 10,000: median / p99 ms | with / without | |');
    say('|---|---:|---:|---:|---:|---|');
    row('scheduler tick, nothing due, nothing queued', without.idle, withBookings.idle);
    row(`scheduler tick starting ${DUE} due bookings (accounts made over SSH)`, without.due, withBookings.due,
      `vs POST of ${DUE} machines → 201 in the same phase: ${ratio(median(without.due), median(without.plain))} / ${ratio(median(withBookings.due), median(withBookings.plain))}`);
    row(`reference: POST /v1/reservations (${DUE} machines) → 201`, without.plain, withBookings.plain);
    row('scheduler tick, 5 queued for a held machine, nothing can start', without.queueTicks, withBookings.queueTicks);
    row('POST /v1/reservations (1 machine) → 201, nothing queued', without.allocation, withBookings.allocation);
    row('POST /v1/reservations (1 machine, the spare) → 201 while 5 are queued for another', without.behindQueue, withBookings.behindQueue);
    say('');
    say(`### 3. GET /v1/pool/availability, ${POOL} machines, one week`);
    say('');
    say('| measurement | n | median ms | p99 ms | median vs GET /v1/machines?limit=100 |');
    say('|---|---:|---:|---:|---:|');
    for (const [label, p] of [['no bookings', without], [`${BOOKINGS.toLocaleString('en')} bookings (${Number(inWeek)} in the week)`, withBookings]] as const) {
      say(`| reference: GET /v1/machines?limit=100, ${label} | ${p.machinesList.length} | ${ms(median(p.machinesList))} | ${ms(p99(p.machinesList))} | 1.00× |`);
      say(`| GET /v1/pool/availability (a week), ${label} | ${p.availability.length} | ${ms(median(p.availability))} | ${ms(p99(p.availability))} | **${ratio(median(p.availability), median(p.machinesList))}** |`);
    }

    const loadAfter = os.loadavg();
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const header = [
      '# bench/scheduling — latest results',
      '',
      `${new Date().toISOString()}, ${os.cpus().length} cores (nproc), ${cpu}, Node ${process.version}. Load average (1/5/15 min) ` +
        `${loadBefore.map((l) => l.toFixed(2)).join('/')} before the run, ${loadAfter.map((l) => l.toFixed(2)).join('/')} after it (these include the run itself).`,
      '',
      `berth built in the bench process as the tests build it (src/app.ts, listening on 127.0.0.1; requests over HTTP with fetch) on its embedded MariaDB; ` +
        `${machines.length} sshd containers from the local Debian image; accounts with an SSH key. Ticks are \`app.jobs.runNow('scheduler')\` ` +
        `with the scheduler idle; the interval is an hour, so only releases (nudges) and the bench run it. p99 is the nearest rank: with fewer than 100 samples, the largest.`,
      '',
    ];
    console.log(header.join('\n'));
    const previous = fs.existsSync(path.join(here, 'RESULTS.md')) ? fs.readFileSync(path.join(here, 'RESULTS.md'), 'utf8') : '';
    const notes = previous.indexOf('\n## Notes');
    fs.writeFileSync(path.join(here, 'RESULTS.md'), [...header, ...lines].join('\n') + '\n' + (notes >= 0 ? previous.slice(notes) : ''));
  } finally {
    await app.close();
    await sql.end();
    await db.close();
    await Promise.all(machines.map((m) => m.stop()));
    await removeAllTestMachines();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
