// Expiry with two berth instances on one database: every expired reservation is released
// exactly once, on every machine.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, json, login, register, type TestApp } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';

let pool: Pool;
let other: TestApp;
beforeAll(async () => {
  pool = await createPool(4, { BERTH_EXPIRY_INTERVAL_SECONDS: '3600' }, 'exp');
  other = await createTestApp({ BERTH_EXPIRY_INTERVAL_SECONDS: '3600' }, { shareWith: pool.t, instanceId: 'instance-b' });
});
afterAll(async () => {
  await other.close();
  await pool.close();
});

async function reserveAs(username: string, count: number) {
  await register(pool.t.app, username);
  const s = await login(pool.t.app, username);
  const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: s.auth, payload: { count, duration_minutes: 5 } });
  expect(res.statusCode).toBe(201);
  return json(res);
}

/** Time passes: the reservation's end moves into the past. */
const expire = (id: string) => pool.t.prisma.reservation.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1000) } });

describe('the expiry job with two instances', () => {
  it('releases each expired reservation exactly once, on every machine', async () => {
    const r1 = await reserveAs('u1', 2);
    const r2 = await reserveAs('u2', 1);
    const r3 = await reserveAs('u3', 1);
    await expire(r1.id);
    await expire(r2.id);
    // r3 has not run out.

    // Both instances tick at the same moment, twice.
    const ticks = await Promise.all([pool.t.app.reservationJob.tick(), other.app.reservationJob.tick()]);
    const again = await Promise.all([pool.t.app.reservationJob.tick(), other.app.reservationJob.tick()]);
    // (A tick that fails rejects, and fails the test: it must not count as releasing nothing.)
    const released = [...ticks, ...again].reduce((n, t) => n + t.expired, 0);
    expect(released).toBe(2);

    for (const r of [r1, r2]) {
      const row = await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: r.id } });
      expect(row).toMatchObject({ status: 'released', releaseReason: 'expired' });
      for (const { name } of r.machines) {
        const m = pool.machines.find((x) => x.name === name)!;
        expect(await accountExists(m, r.account.username)).toBe(false);
      }
    }
    const live = await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: r3.id } });
    expect(live.status).toBe('active');
    const stats = json(await pool.t.app.inject({ method: 'GET', url: '/v1/pool', headers: pool.admin.auth }));
    expect(stats).toMatchObject({ available: 3, reserved: 1 });
    await pool.t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: pool.admin.auth });
  });

  it('runs on its own interval (BERTH_EXPIRY_INTERVAL_SECONDS)', async () => {
    const fast = await createTestApp({ BERTH_EXPIRY_INTERVAL_SECONDS: '0.5' }, { shareWith: pool.t, instanceId: 'instance-c' });
    try {
      const r = await reserveAs('u4', 1);
      await expire(r.id);
      const deadline = Date.now() + 10_000;
      let status = 'active';
      while (status !== 'released' && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 200));
        status = (await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: r.id } })).status;
      }
      expect(status).toBe('released');
      const m = pool.machines.find((x) => x.name === r.machines[0].name)!;
      expect(await accountExists(m, 'u4')).toBe(false);
    } finally {
      await fast.close();
    }
  });

  it('release-all (admin) releases every active reservation and says how many', async () => {
    await reserveAs('u5', 1);
    await reserveAs('u6', 2);
    const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: pool.admin.auth });
    expect(json(res)).toEqual({ released: 2 });
    expect(json(await pool.t.app.inject({ method: 'GET', url: '/v1/pool', headers: pool.admin.auth })).available).toBe(4);
  });
});
