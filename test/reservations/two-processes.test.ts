// Two berth processes (separate OS processes, as on two hosts) on one database and one
// pool of real SSH machines, both hammered with reservations and releases at once: the
// database's record of the whole run shows that no machine was ever in two live
// reservations, and when it is over every machine is back with no account left on it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createConnection } from 'mariadb';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { PASSWORD } from '../helpers/app.js';
import { readAllocationHistory, recordAllocations } from '../helpers/allocation-history.js';
import { createEmptyDatabase } from '../helpers/db.js';
import { callJson, startServer, type ServerProcess } from '../helpers/server-process.js';
import { rootKey, startMachines, type TestMachine } from '../helpers/ssh-machines.js';

/** How long both processes are hammered at least, and at most (until the pool has changed hands enough). */
const HAMMER_MS = 20_000;
const HAMMER_MAX_MS = 80_000;
const USERS = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay'];

let machines: TestMachine[];
let db: Awaited<ReturnType<typeof createEmptyDatabase>>;
const dirs: string[] = [];
const servers: ServerProcess[] = [];
const tempDir = (prefix: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

beforeAll(async () => {
  [machines, db] = await Promise.all([startMachines(4, 'twop'), createEmptyDatabase('twoproc')]);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await Promise.all(machines.map((m) => m.stop()));
  await db.drop();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

const connect = () => createConnection({ socketPath: db.target.socketPath, user: 'root', database: db.target.database });

/** Logs in on `server`; tokens verify on both processes (shared signing keys). */
async function token(server: ServerProcess, username: string, password = PASSWORD): Promise<string> {
  const r = await callJson(server.url, 'POST', '/v1/token', undefined, { username, password });
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

describe('two berth processes on one pool', () => {
  it('never hand one machine to two reservations, and give every machine back', { timeout: 240_000 }, async () => {
    // As the README's "Several processes on one database" asks: one database, shared
    // signing keys and secret key; each process its own data directory and node name.
    const keysDir = tempDir('berth-twoproc-keys-');
    const common = {
      DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(db.target.socketPath!)}`,
      BERTH_JWT_KEYS_DIR: keysDir,
      BERTH_SECRET_KEY: randomBytes(32).toString('base64'),
      ADMIN_PASSWORD: PASSWORD,
      BERTH_EXPIRY_INTERVAL_SECONDS: '1',
      BERTH_LOGIN_MAX_PER_IP: '100000',
      BERTH_LOGIN_MAX_PER_USERNAME: '100000',
      BERTH_REGISTER_MAX_PER_IP: '100000',
      BERTH_VM_ACCEL: 'tcg',
    };
    // One after the other: the first migrates the database and creates the signing key.
    for (const node of ['berth-a', 'berth-b']) {
      servers.push(await startServer({ ...common, BERTH_DATA_DIR: tempDir(`berth-twoproc-${node}-`), BERTH_NODE_NAME: node }, 120_000));
    }
    const [a, b] = servers as [ServerProcess, ServerProcess];
    expect(a.child.pid).not.toBe(b.child.pid);
    onTestFailed(() => console.error(`berth-a:\n${a.output()}\nberth-b:\n${b.output()}`));
    const recorder = await connect();
    await recordAllocations(recorder).finally(() => recorder.end());

    const admin = await token(a, 'admin');
    for (const m of machines) {
      const r = await callJson(a.url, 'POST', '/v1/machines', admin, {
        name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey,
      });
      expect(r.status, m.name).toBe(201);
    }
    for (const u of USERS) expect((await callJson(b.url, 'POST', '/v1/register', undefined, { username: u, password: PASSWORD })).status).toBe(201);

    // Each user works through one process and releases through either: reservations made
    // on one process are ended by the other as often as by their own.
    const answers: { server: string; request: string; status: number }[] = [];
    const unanswered: string[] = [];
    const granted = new Map<string, number>([[a.url, 0], [b.url, 0]]);
    let hammering = true;
    const enough = async () => {
      const conn = await connect();
      const { reuses } = await readAllocationHistory(conn).finally(() => conn.end());
      return reuses > 2 * machines.length && granted.get(a.url)! > 0 && granted.get(b.url)! > 0 && answers.some((x) => x.status === 409);
    };
    const started = Date.now();
    const stopWhenEnough = (async () => {
      try {
        await new Promise((resolve) => setTimeout(resolve, HAMMER_MS));
        while (Date.now() - started < HAMMER_MAX_MS && !(await enough())) await new Promise((resolve) => setTimeout(resolve, 1000));
      } finally {
        hammering = false;
      }
    })();
    await Promise.all([
      stopWhenEnough,
      ...USERS.map(async (username, i) => {
        const home = servers[i % 2]!;
        const access = await token(home, username);
        const call = async (server: ServerProcess, method: string, url: string, body?: unknown) => {
          const r = await callJson(server.url, method, url, access, body);
          answers.push({ server: server.url, request: `${method} ${url.replace(/[0-9a-f-]{36}/, ':id')}`, status: r.status });
          return r;
        };
        while (hammering) {
          try {
            const r = await call(home, 'POST', '/v1/reservations', { count: 1 + (i % 2), duration_minutes: 5 });
            if (r.status === 201) {
              granted.set(home.url, granted.get(home.url)! + 1);
              const releaser = servers[Math.floor(Math.random() * 2)]!;
              await call(releaser, 'DELETE', `/v1/reservations/${r.body.id}`);
            } else {
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
          } catch (err) {
            unanswered.push(String((err as Error).cause ?? err));
          }
        }
      }),
    ]);

    expect(unanswered).toEqual([]);
    // Nothing but a grant, a release, or "not enough machines free right now".
    const unexpected = answers.filter(
      (x) => !(x.request === 'POST /v1/reservations' ? [201, 409] : [200, 202, 204]).includes(x.status),
    );
    expect(unexpected).toEqual([]);
    // Both processes granted reservations, and they competed for the machines.
    expect(granted.get(a.url)).toBeGreaterThan(0);
    expect(granted.get(b.url)).toBeGreaterThan(0);
    expect(answers.map((x) => x.status)).toContain(409);

    // Releases end in the background: wait until nothing is live any more.
    const conn = await connect();
    try {
      await expect
        .poll(
          async () => {
            const [{ n }] = await conn.query(`SELECT COUNT(*) AS n FROM reservations WHERE status IN ('provisioning', 'active', 'releasing')`);
            const [{ held }] = await conn.query(`SELECT COUNT(*) AS held FROM machines WHERE status <> 'available'`);
            return Number(n) + Number(held);
          },
          { timeout: 60_000, interval: 500 },
        )
        .toBe(0);
      const history = await readAllocationHistory(conn);
      expect(history.overlaps).toEqual([]);
      // Not vacuous: machines went from one reservation to the next many times.
      expect(history.claims).toBeGreaterThanOrEqual(granted.get(a.url)! + granted.get(b.url)!);
      expect(history.reuses).toBeGreaterThan(2 * machines.length);
    } finally {
      await conn.end();
    }
    for (const m of machines) expect((await m.sh('ls /var/lib/berth/accounts 2>/dev/null | wc -l')).out.trim(), m.name).toBe('0');
  });
});
