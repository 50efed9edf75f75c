// A slow machine is not a crashed process: while berth is still provisioning it renews
// its lease, so another instance's reconciler does not roll the reservation back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, json, userSession, type TestApp } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';
import { slowDownUseradd } from '../helpers/ssh-machines.js';

let pool: Pool;
let other: TestApp;
beforeAll(async () => {
  const env = { BERTH_RESERVATION_LEASE_SECONDS: '1', BERTH_EXPIRY_INTERVAL_SECONDS: '3600' };
  pool = await createPool(1, env, 'lease');
  other = await createTestApp(env, { shareWith: pool.t, instanceId: 'reconciler' });
  // useradd takes 3 s here: three lease lengths.
  await slowDownUseradd(pool.machines[0]!, 3);
});
afterAll(async () => {
  await other.close();
  await pool.close();
});

describe('leases', () => {
  it('are renewed while provisioning, so a busy reconciler elsewhere leaves the work alone', async () => {
    const u = await userSession(pool.t, 'gina');
    const pending = pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: u.auth, payload: { count: 1 } });
    let rolledBack = 0;
    const until = Date.now() + 4500;
    while (Date.now() < until) {
      // A tick that fails fails the test: it would have rolled nothing back for the wrong reason.
      rolledBack += (await other.app.reservationJob.tick()).rolledBack;
      await new Promise((r) => setTimeout(r, 200));
    }
    const res = await pending;
    expect(res.statusCode).toBe(201);
    expect(json(res).status).toBe('active');
    expect(rolledBack).toBe(0);
    expect(await accountExists(pool.machines[0]!, 'gina')).toBe(true);
  });
});
