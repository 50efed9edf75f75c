// The database stops answering (SIGSTOP) or dies (SIGKILL) while berth is under load.
// Requests get 503 database_unavailable with Retry-After within about two seconds, never
// a 500; the embedded server is restarted by berth; berth heals by itself once the
// database is back (with DATABASE_URL too); no reservation is lost, and no machine is ever
// handed out twice (the database's own record of the whole run says so).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createConnection } from 'mariadb';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startEmbeddedMariaDb } from '../../src/infra/embedded-mariadb.js';
import { readAllocationHistory, recordAllocations } from '../helpers/allocation-history.js';
import { callJson, startServer, type ServerProcess } from '../helpers/server-process.js';
import { rootKey, startMachines, type TestMachine } from '../helpers/ssh-machines.js';

const ADMIN_PASSWORD = 'outage admin passphrase';
const PASSWORD = 'correct horse battery staple';
const LIVE = ['provisioning', 'active', 'releasing'];

let machines: TestMachine[];
beforeAll(async () => {
  machines = await startMachines(3, 'outage');
});
afterAll(() => Promise.all(machines.map((m) => m.stop())));

const serverEnv = {
  ADMIN_PASSWORD,
  BERTH_EXPIRY_INTERVAL_SECONDS: '1',
  BERTH_RESERVATION_LEASE_SECONDS: '3',
  BERTH_LOGIN_MAX_PER_IP: '100000',
  BERTH_LOGIN_MAX_PER_USERNAME: '100000',
  BERTH_REGISTER_MAX_PER_IP: '100000',
  BERTH_VM_ACCEL: 'tcg',
};

async function token(base: string, username: string, password = PASSWORD): Promise<string> {
  const r = await callJson(base, 'POST', '/v1/token', undefined, { username, password });
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

/** The three answers the issue names, each with its status, problem code, Retry-After and time. */
async function probe(base: string, access: string) {
  const one = async (method: string, url: string, init: RequestInit) => {
    const started = performance.now();
    const res = await fetch(`${base}${url}`, { method, ...init });
    const body = (await res.json().catch(() => null)) as { code?: string } | null;
    return { url, status: res.status, code: body?.code, retryAfter: res.headers.get('retry-after'), ms: performance.now() - started };
  };
  return Promise.all([
    one('GET', '/readyz', {}),
    one('GET', '/v1/whoami', { headers: { authorization: `Bearer ${access}` } }),
    one('POST', '/v1/token', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) }),
  ]);
}

/**
 * Probes three times: every answer is 503 database_unavailable with Retry-After, and each
 * URL's median time is under 3 s (berth's deadline is 2 s; on a busy machine one answer
 * may come late without the deadline being missed).
 */
async function expectUnavailable(base: string, access: string) {
  const rounds: Awaited<ReturnType<typeof probe>>[] = [];
  for (let i = 0; i < 3; i++) rounds.push(await probe(base, access));
  for (const a of rounds.flat()) {
    expect(a, a.url).toMatchObject({ status: 503, code: 'database_unavailable' });
    expect(Number(a.retryAfter), a.url).toBeGreaterThan(0);
  }
  for (const url of rounds[0]!.map((a) => a.url)) {
    const times = rounds.map((r) => r.find((a) => a.url === url)!.ms).sort((x, y) => x - y);
    expect(times[1], url).toBeLessThan(3000);
  }
}

async function untilReady(base: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await fetch(`${base}/readyz`).catch(() => null))?.status === 200) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('berth did not become ready again');
}

const mariadbPid = (dir: string) => Number(fs.readFileSync(path.join(dir, 'mariadbd.pid'), 'utf8').trim());

/**
 * Kills the server of `dir` (SIGKILL), and again each time it is started, for `ms`: a
 * crash loop, long enough to see what clients get while the database is gone (a single
 * kill is repaired within about a second). The children of `parentPid`, the process that
 * starts the server, are looked at every few milliseconds (a pkill loop left gaps of
 * 300 ms on a busy machine, time enough for a restarted server to answer).
 */
async function crashLoop(parentPid: number, dir: string, ms: number, during: () => Promise<void>) {
  const datadir = `--datadir=${path.join(dir, 'data')}`;
  const read = (file: string) => fs.promises.readFile(file, 'utf8').catch(() => '');
  let looping = true;
  const loop = (async () => {
    while (looping) {
      for (const pid of (await read(`/proc/${parentPid}/task/${parentPid}/children`)).split(' ').filter(Boolean)) {
        if (!(await read(`/proc/${pid}/cmdline`)).split('\0').includes(datadir)) continue;
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const deadline = Date.now() + ms;
  try {
    await during();
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
  } finally {
    looping = false;
    await loop;
  }
}

/**
 * Users who log in, reserve and release in a loop, as fast as berth lets them, until
 * stopped. Every answer is recorded, logins included (a 500 is a failure whatever else
 * happens), and so is every request that got no answer at all.
 */
function load(base: string, users: string[]) {
  const statuses: { url: string; status: number }[] = [];
  const unanswered: string[] = [];
  const granted = new Set<string>();
  let running = true;
  const call = async (method: string, url: string, access?: string, body?: unknown) => {
    const r = await callJson(base, method, url, access, body);
    statuses.push({ url: `${method} ${url}`, status: r.status });
    return r;
  };
  const worker = async (username: string) => {
    while (running) {
      try {
        // A login every round: logins meet the outages too.
        const login = await call('POST', '/v1/token', undefined, { username, password: PASSWORD });
        if (login.status === 200) {
          const access: string = login.body.access_token;
          const r = await call('POST', '/v1/reservations', access, { count: 1, duration_minutes: 5 });
          if (r.status === 201) {
            granted.add(r.body.id);
            await call('DELETE', `/v1/reservations/${r.body.id}`, access);
          }
          await call('GET', '/v1/whoami', access);
        }
      } catch (err) {
        unanswered.push(String((err as Error).cause ?? err));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const workers = users.map(worker);
  return {
    statuses,
    unanswered,
    granted,
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}

async function setUp(base: string): Promise<{ admin: string; users: string[] }> {
  const admin = await token(base, 'admin', ADMIN_PASSWORD);
  for (const m of machines) {
    const r = await callJson(base, 'POST', '/v1/machines', admin, {
      name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey,
    });
    if (r.status !== 201) throw new Error(`register ${m.name}: ${r.status}`);
  }
  const users = ['ua', 'ub', 'uc', 'ud'];
  for (const u of users) await callJson(base, 'POST', '/v1/register', undefined, { username: u, password: PASSWORD });
  return { admin, users };
}

async function allocationHistory(socketPath: string) {
  const conn = await createConnection({ socketPath, user: 'root', database: 'berth' });
  return readAllocationHistory(conn).finally(() => conn.end());
}

/**
 * What must hold once the dust has settled: no machine was ever handed out twice (over the
 * whole run), nothing lost, nothing left behind.
 */
async function checkInvariants(socketPath: string, granted: Set<string>) {
  const history = await allocationHistory(socketPath);
  expect(history.overlaps).toEqual([]);
  // Not vacuous: every grant is in the record, and machines went from one reservation to the next.
  expect(history.claims).toBeGreaterThanOrEqual(granted.size);
  expect(history.reuses).toBeGreaterThan(0);
  const conn = await createConnection({ socketPath, user: 'root', database: 'berth' });
  try {
    const rows: { id: string; status: string }[] = await conn.query('SELECT id, status FROM reservations');
    const known = new Map(rows.map((r) => [r.id, r.status]));
    // Every reservation a client was given still exists, and ended the way it was released.
    for (const id of granted) expect(['active', 'releasing', 'released'], id).toContain(known.get(id));
    expect(rows.filter((r) => LIVE.includes(r.status))).toEqual([]);
    const machinesRows: { name: string; status: string; reservation_id: string | null }[] = await conn.query(
      'SELECT name, status, reservation_id FROM machines ORDER BY name',
    );
    for (const m of machinesRows) expect(m, m.name).toMatchObject({ status: 'available', reservation_id: null });
  } finally {
    await conn.end();
  }
  // No account outlived its reservation on any machine.
  for (const m of machines) expect((await m.sh('ls /var/lib/berth/accounts 2>/dev/null | wc -l')).out.trim()).toBe('0');
}

/** Releases what is still active (a release answered 503 during the outage), then lets the job finish the rest. */
async function settle(base: string, admin: string, socketPath: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    await callJson(base, 'POST', '/v1/reservations/release-all', admin);
    const conn = await createConnection({ socketPath, user: 'root', database: 'berth' });
    const [{ n }] = await conn.query(
      `SELECT COUNT(*) AS n FROM reservations WHERE status IN ('provisioning','active','releasing')`,
    );
    const [{ held }] = await conn.query(`SELECT COUNT(*) AS held FROM machines WHERE status <> 'available'`);
    await conn.end();
    if (Number(n) === 0 && Number(held) === 0) return;
    if (Date.now() > deadline) throw new Error(`still ${n} live reservations and ${held} held machines`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('the embedded database stopped and killed under load', () => {
  let server: ServerProcess;
  let dataDir = '';
  afterAll(async () => {
    await server?.stop();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 503 quickly while it is away, restarts it, heals, and loses nothing', { timeout: 240_000 }, async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-outage-'));
    server = await startServer({ ...serverEnv, BERTH_DATA_DIR: dataDir });
    onTestFailed(() => {
      const mariadbLog = fs.readFileSync(path.join(dataDir, 'mariadb', 'mariadb.log'), 'utf8').split('\n').slice(-60).join('\n');
      console.error(`berth's output:\n${server.output()}\nthe end of mariadb.log:\n${mariadbLog}`);
    });
    const base = server.url;
    const mariadbDir = path.join(dataDir, 'mariadb');
    // Where berth's server listens, as berth says (in the data directory unless that path is
    // too long for a unix socket).
    const socketPath = /MariaDB ready on (\S+)/.exec(server.output())![1]!;
    const recorder = await createConnection({ socketPath, user: 'root', database: 'berth' });
    await recordAllocations(recorder).finally(() => recorder.end());
    const { admin, users } = await setUp(base);
    const work = load(base, users);
    await new Promise((r) => setTimeout(r, 2000));

    // Stopped: connections open, nothing answers. After the session cache (1 s) runs out,
    // whoami asks the database too.
    process.kill(mariadbPid(mariadbDir), 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 1500));
      await expectUnavailable(base, admin);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      process.kill(mariadbPid(mariadbDir), 'SIGCONT');
    }
    await untilReady(base, 15_000);
    for (const a of await probe(base, admin)) expect(a, a.url).toMatchObject({ status: 200 });
    await new Promise((r) => setTimeout(r, 1500));

    // Killed, and killed again as it comes back: berth says so at once, keeps starting it
    // (waiting longer each time), and carries on once it stays up.
    await crashLoop(server.child.pid!, mariadbDir, 4000, async () => {
      await new Promise((r) => setTimeout(r, 300));
      await expectUnavailable(base, admin);
    });
    await untilReady(base);
    expect(server.output()).toMatch(/MariaDB exited \(SIGKILL\); restarting it in 0.5 s[^]*restarting it in 1 s/);
    await expect.poll(() => server.output(), { timeout: 5000 }).toMatch(/MariaDB is back/);
    for (const a of await probe(base, admin)) expect(a, a.url).toMatchObject({ status: 200 });
    // The load goes on until a client has been given a reservation and a machine has gone
    // from one reservation to another (on a busy machine a round of the load takes seconds):
    // the record below then has something to show.
    await expect
      .poll(async () => work.granted.size > 0 && (await allocationHistory(socketPath)).reuses > 0, { timeout: 120_000, interval: 1000 })
      .toBe(true);

    await work.stop();
    expect(work.unanswered).toEqual([]);
    expect(work.statuses.filter((s) => s.status >= 500 && s.status !== 503)).toEqual([]);
    // The outages met the load: some of its requests were the ones answered 503. Logins
    // were among what was counted, again and again.
    expect(work.statuses.map((s) => s.status)).toContain(503);
    expect(work.statuses.filter((s) => s.url === 'POST /v1/token').length).toBeGreaterThan(users.length);
    expect(work.granted.size).toBeGreaterThan(0);
    await settle(base, admin, socketPath);
    await checkInvariants(socketPath, work.granted);
  });
});

describe('a DATABASE_URL database that dies and comes back', () => {
  let server: ServerProcess;
  let dir = '';
  afterAll(async () => {
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('heals by itself once the database answers again', { timeout: 180_000 }, async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-outage-url-'));
    // Someone else's server (here: this test's), restarted by its own supervisor.
    const db = await startEmbeddedMariaDb({ dir: path.join(dir, 'db') });
    try {
      await db.ensureDatabase('berth');
      server = await startServer({
        ...serverEnv,
        BERTH_DATA_DIR: path.join(dir, 'data'),
        DATABASE_URL: `mysql://root@localhost/berth?socket=${encodeURIComponent(db.root.socketPath!)}`,
      });
      const base = server.url;
      const admin = await token(base, 'admin', ADMIN_PASSWORD);
      await crashLoop(process.pid, path.join(dir, 'db'), 3000, async () => {
        await new Promise((r) => setTimeout(r, 300));
        await expectUnavailable(base, admin);
      });
      await untilReady(base);
      for (const a of await probe(base, admin)) expect(a, a.url).toMatchObject({ status: 200 });
    } finally {
      await server?.stop();
      await db.stop();
    }
  });
});
