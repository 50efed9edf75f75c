// 50 people ask for a machine at the same moment from a pool of 5.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, login, register } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';

let pool: Pool;
beforeAll(async () => {
  pool = await createPool(5, { BERTH_RESERVATION_MAX_MACHINES_PER_USER: '5' }, 'cc');
});
afterAll(() => pool.close());

describe('concurrent requests from different people', () => {
  it('never refuse while machines are free: 5 people, 5 machines, all served, three rounds', async () => {
    const people = await Promise.all(Array.from({ length: 5 }, async (_, i) => {
      await register(pool.t.app, `fair${i}`);
      return login(pool.t.app, `fair${i}`);
    }));
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(
        people.map((p) => pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: p.auth, payload: { count: 1 } })),
      );
      expect(results.map((r) => r.statusCode)).toEqual([201, 201, 201, 201, 201]);
      await pool.t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: pool.admin.auth });
    }
  });
});

describe('a tag-filtered request next to unfiltered ones', () => {
  it('does not hold machines it is not taking: everyone is served, five rounds', async () => {
    const last = [...pool.machines].sort((a, b) => a.name.localeCompare(b.name)).at(-1)!;
    await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${last.name}`, headers: pool.admin.auth, payload: { type: 'gpu', tags: { gpu: 'a100' } } });
    const people = await Promise.all(Array.from({ length: 5 }, async (_, i) => {
      await register(pool.t.app, `tag${i}`);
      return login(pool.t.app, `tag${i}`);
    }));
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([
        pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: people[0]!.auth, payload: { count: 1, tags: { gpu: 'a100' } } }),
        ...people.slice(1).map((p) => pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: p.auth, payload: { count: 1, type: 'server' } })),
      ]);
      expect(results.map((r) => r.statusCode)).toEqual([201, 201, 201, 201, 201]);
      await pool.t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: pool.admin.auth });
    }
  });
});

describe('50 concurrent requests for a pool of 5', () => {
  it('exactly 5 succeed, each with a different machine, and every machine has exactly one account', async () => {
    const users = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      await register(pool.t.app, `racer${i}`);
      return login(pool.t.app, `racer${i}`);
    }));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: users[i % 10]!.auth, payload: { count: 1, username: `acct${i}` } }),
      ),
    );
    const codes = results.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 201)).toHaveLength(5);
    expect(codes.filter((c) => c === 409)).toHaveLength(45);
    const won = results.filter((r) => r.statusCode === 201).map((r) => json(r));
    const machines = won.map((r) => r.machines[0].name);
    expect(new Set(machines).size).toBe(5);

    // The database agrees: no machine in two live reservations.
    const live = await pool.t.prisma.reservationMachine.findMany({
      where: { reservation: { status: { in: ['provisioning', 'active', 'releasing'] } } },
    });
    expect(live).toHaveLength(5);
    expect(new Set(live.map((l) => l.machineId)).size).toBe(5);
    // And so do the machines: one berth account each, the winner's.
    for (const r of won) {
      const m = pool.machines.find((x) => x.name === r.machines[0].name)!;
      const accounts = (await m.sh("getent passwd | grep -c ':berth reservation ' || true")).out.trim();
      expect(accounts).toBe('1');
      expect((await m.sh(`getent passwd ${r.account.username}`)).code).toBe(0);
    }
  });
});
