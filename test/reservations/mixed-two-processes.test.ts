// 200 requests at once — now, when free, and booked ahead — through two berth OS processes
// on one database and one pool of real SSH machines: the database's record shows that no
// machine was ever claimed while another reservation held it, and that no two windows that
// still hold or plan a machine overlap in time; every request got one of its documented
// answers.
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

const USERS = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy', 'jon'];
const REQUESTS = 200;

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
  [machines, db] = await Promise.all([startMachines(4, 'mixed'), createEmptyDatabase('mixed')]);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await Promise.all(machines.map((m) => m.stop()));
  await db.drop();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

const connect = () => createConnection({ socketPath: db.target.socketPath, user: 'root', database: db.target.database });

async function token(server: ServerProcess, username: string): Promise<string> {
  const r = await callJson(server.url, 'POST', '/v1/token', undefined, { username, password: PASSWORD });
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

/** The i-th request: a third now, a third waiting, a third booked 60 s to 115 s ahead (the answers to 200 requests at once take seconds). */
function requestBody(i: number): object {
  const count = 1 + (i % 2);
  switch (i % 3) {
    case 0:
      return { count, duration_minutes: 1 };
    case 1:
      return { count, duration_minutes: 1, wait_minutes: 1 };
    default:
      return { count, duration_minutes: 1, start_at: new Date(Date.now() + 60_000 + (i % 12) * 5_000).toISOString() };
  }
}

describe('200 mixed requests on two berth processes', () => {
  it('never put one machine in two overlapping windows', { timeout: 420_000 }, async () => {
    const keysDir = tempDir('berth-mixed-keys-');
    const common = {
      DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(db.target.socketPath!)}`,
      BERTH_JWT_KEYS_DIR: keysDir,
      BERTH_SECRET_KEY: randomBytes(32).toString('base64'),
      ADMIN_PASSWORD: PASSWORD,
      BERTH_EXPIRY_INTERVAL_SECONDS: '1',
      BERTH_SCHEDULER_INTERVAL_SECONDS: '1',
      BERTH_RESERVATION_MAX_MACHINES_PER_USER: '1000',
      BERTH_LOGIN_MAX_PER_IP: '100000',
      BERTH_LOGIN_MAX_PER_USERNAME: '100000',
      BERTH_REGISTER_MAX_PER_IP: '100000',
      BERTH_VM_ACCEL: 'tcg',
    };
    for (const node of ['berth-a', 'berth-b']) {
      servers.push(await startServer({ ...common, BERTH_DATA_DIR: tempDir(`berth-mixed-${node}-`), BERTH_NODE_NAME: node }, 120_000));
    }
    const [a, b] = servers as [ServerProcess, ServerProcess];
    onTestFailed(() => console.error(`berth-a:\n${a.output()}\nberth-b:\n${b.output()}`));
    const recorder = await connect();
    await recordAllocations(recorder).finally(() => recorder.end());

    const admin = await token(a, 'admin');
    for (const m of machines) {
      const r = await callJson(a.url, 'POST', '/v1/machines', admin, { name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey });
      expect(r.status, m.name).toBe(201);
    }
    for (const u of USERS) expect((await callJson(b.url, 'POST', '/v1/register', undefined, { username: u, password: PASSWORD })).status).toBe(201);
    const tokens = await Promise.all(USERS.map((u, i) => token(servers[i % 2]!, u)));

    // All at once, half through each process.
    const answers = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const body = requestBody(i);
        const r = await callJson(servers[i % 2]!.url, 'POST', '/v1/reservations', tokens[i % USERS.length], body);
        return { kind: ['now', 'wait', 'book'][i % 3]!, status: r.status, code: r.body?.code as string | undefined, state: r.body?.status as string | undefined };
      }),
    );
    const documented: Record<string, number[]> = { now: [201, 409], wait: [201, 202], book: [201, 409] };
    expect(answers.filter((x) => !documented[x.kind]!.includes(x.status))).toEqual([]);
    // Not vacuous: each kind was granted at least once, and the pool was contended.
    expect(answers.some((x) => x.kind === 'now' && x.status === 201)).toBe(true);
    expect(answers.some((x) => x.kind === 'wait' && x.status === 202)).toBe(true);
    expect(answers.some((x) => x.kind === 'book' && x.state === 'scheduled')).toBe(true);
    expect(answers.some((x) => x.status === 409)).toBe(true);

    // Windows that hold or plan machines: active, being set up, or booked. Each was fixed when
    // it was planned (nothing here is extended): [expires_at - duration, expires_at).
    const clashing = async () => {
      const windows: { machine: string; id: string; start: Date; end: Date }[] = await conn.query(
        `SELECT rm.machine_id AS machine, r.id, r.expires_at - INTERVAL r.duration_minutes MINUTE AS start, r.expires_at AS end
           FROM reservations r JOIN reservation_machines rm ON rm.reservation_id = r.id
          WHERE r.status IN ('provisioning', 'active', 'scheduled')`,
      );
      return windows.filter((w, i) => windows.some((v, j) => j > i && v.machine === w.machine && v.start < w.end && w.start < v.end));
    };
    const conn = await connect();
    try {
      // Right after the burst: every planned window apart from every other, bookings included.
      expect(await clashing()).toEqual([]);
      // Every booking starts (or fails) in the next two minutes, the queue moving meanwhile.
      await expect
        .poll(async () => Number((await conn.query(`SELECT COUNT(*) AS n FROM reservations WHERE status = 'scheduled'`))[0].n), {
          timeout: 200_000,
          interval: 1000,
        })
        .toBe(0);
      expect(await clashing()).toEqual([]);
      const history = await readAllocationHistory(conn);
      expect(history.overlaps).toEqual([]);
      // Machines changed hands: bookings and queued requests really started.
      expect(history.claims).toBeGreaterThan(machines.length);
      const started = await conn.query(`SELECT COUNT(*) AS n FROM reservations WHERE activated_at IS NOT NULL AND (start_at IS NOT NULL OR wait_until IS NOT NULL)`);
      expect(Number(started[0].n)).toBeGreaterThan(0);
    } finally {
      await conn.end();
    }
  });
});
