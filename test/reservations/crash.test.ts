// A berth process killed (SIGKILL) while it is setting up a reservation — one asked for now,
// or a booking the scheduler started — : after a restart, the reservation is rolled back,
// every account it made — even one a machine finished creating after berth died — is
// removed, and the machines return to the pool.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD } from '../helpers/app.js';
import { createEmptyDatabase, rootQuery } from '../helpers/db.js';
import { callJson, startServer, type ServerProcess } from '../helpers/server-process.js';
import { rootKey, slowDownUseradd, startMachines, type TestMachine } from '../helpers/ssh-machines.js';

let machines: TestMachine[];
let db: Awaited<ReturnType<typeof createEmptyDatabase>>;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-crash-'));
let env: Record<string, string>;

beforeAll(async () => {
  [machines, db] = await Promise.all([startMachines(2, 'crash'), createEmptyDatabase('crash')]);
  // The second machine creates accounts slowly, so the crash lands mid-provisioning.
  await slowDownUseradd(machines[1]!, 3);
  env = {
    BERTH_DATA_DIR: dataDir,
    DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(db.target.socketPath!)}`,
    ADMIN_PASSWORD: PASSWORD,
    BERTH_RESERVATION_LEASE_SECONDS: '2',
    BERTH_EXPIRY_INTERVAL_SECONDS: '1',
  };
});
afterAll(async () => {
  await Promise.all(machines.map((m) => m.stop()));
  await db.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const call = (server: ServerProcess, method: string, url: string, token?: string, body?: unknown) =>
  callJson(server.url, method, url, token, body);

const berthAccounts = async (m: TestMachine) => (await m.sh("getent passwd | grep -c ':berth reservation ' || true")).out.trim();

describe('a crash between claiming machines and finishing their accounts', () => {
  it('is rolled back after a restart: no account outlives it, no machine stays claimed', async () => {
    let server = await startServer(env);
    const admin = (await call(server, 'POST', '/v1/token', undefined, { username: 'admin', password: PASSWORD })).body.access_token;
    for (const m of machines) {
      const r = await call(server, 'POST', '/v1/machines', admin, { name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey });
      expect(r.status).toBe(201);
    }
    await call(server, 'POST', '/v1/register', undefined, { username: 'alice', password: PASSWORD });
    const alice = (await call(server, 'POST', '/v1/token', undefined, { username: 'alice', password: PASSWORD })).body.access_token;

    // Ask for both machines and kill berth once the fast machine has its account.
    const pending = call(server, 'POST', '/v1/reservations', alice, { count: 2 }).catch(() => null);
    const deadline = Date.now() + 10_000;
    while ((await berthAccounts(machines[0]!)) !== '1' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    server.child.kill('SIGKILL');
    await pending;
    const [row] = await rootQuery<{ status: string }[]>('SELECT status FROM reservations', [], db.target.database);
    expect(row?.status).toBe('provisioning');
    expect(await berthAccounts(machines[0]!)).toBe('1');

    server = await startServer(env);
    try {
      // The lease (2 s) runs out, a job tick (1 s) rolls it back.
      const until = Date.now() + 15_000;
      let status = 'provisioning';
      while (status === 'provisioning' && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        [{ status }] = await rootQuery<{ status: string }[]>('SELECT status FROM reservations', [], db.target.database) as [{ status: string }];
      }
      expect(status).toBe('failed');
      // Wait past the slow useradd (3 s after it began): it must not have come back.
      await new Promise((r) => setTimeout(r, 3500));
      for (const m of machines) expect(await berthAccounts(m)).toBe('0');
      const stats = await call(server, 'GET', '/v1/pool', admin);
      expect(stats.body).toMatchObject({ total: 2, available: 2, reserved: 0 });
      const list = await call(server, 'GET', '/v1/reservations', alice);
      expect(list.body.items[0].failure_reason).toMatch(/interrupted/);
    } finally {
      await server.stop();
    }
  });

  it('a booking the scheduler was starting is rolled back the same way', async () => {
    let server = await startServer({ ...env, BERTH_SCHEDULER_INTERVAL_SECONDS: '1' });
    const alice = (await call(server, 'POST', '/v1/token', undefined, { username: 'alice', password: PASSWORD })).body.access_token;
    const booked = await call(server, 'POST', '/v1/reservations', alice, { count: 2, start_at: new Date(Date.now() + 5000).toISOString() });
    expect(booked.status, JSON.stringify(booked.body)).toBe(201);
    const statusOf = async () => (await rootQuery<{ status: string }[]>('SELECT status FROM reservations WHERE id = ?', [booked.body.id], db.target.database))[0]!.status;

    // At its start the scheduler claims the machines and makes the accounts: kill berth once the fast machine has its own.
    const deadline = Date.now() + 20_000;
    while ((await berthAccounts(machines[0]!)) !== '1' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    server.child.kill('SIGKILL');
    expect(await statusOf()).toBe('provisioning');

    server = await startServer({ ...env, BERTH_SCHEDULER_INTERVAL_SECONDS: '1' });
    try {
      await expect.poll(statusOf, { timeout: 15_000, interval: 250 }).toBe('failed');
      await new Promise((r) => setTimeout(r, 3500));
      for (const m of machines) expect(await berthAccounts(m)).toBe('0');
      const admin = (await call(server, 'POST', '/v1/token', undefined, { username: 'admin', password: PASSWORD })).body.access_token;
      expect((await call(server, 'GET', '/v1/pool', admin)).body).toMatchObject({ total: 2, available: 2, reserved: 0 });
    } finally {
      await server.stop();
    }
  });
});
