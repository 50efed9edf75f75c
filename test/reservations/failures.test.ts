// All-or-nothing under failure, on real machines: one machine down or impersonated
// means no reservation, no leftover account, and the healthy machines back in the pool.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, userSession, type Session } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';

let pool: Pool;
let alice: Session;
beforeAll(async () => {
  pool = await createPool(3, {}, 'fail');
  alice = await userSession(pool.t, 'alice');
});
afterAll(() => pool.close());

const reserve = (payload: object) => pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload });
const machine = async (name: string) => json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${name}`, headers: alice.auth }));

describe('a machine that is down', () => {
  it('fails the whole reservation naming it; accounts on the others are removed; it goes offline', async () => {
    const [up1, up2, down] = pool.machines as [typeof pool.machines[0], typeof pool.machines[0], typeof pool.machines[0]];
    await down.stop();
    const r = await reserve({ count: 3 });
    expect(r.statusCode).toBe(502);
    const body = json(r);
    expect(body).toMatchObject({ code: 'provisioning_failed', machine: down.name, failed_machines: [down.name] });
    expect(body.detail).toContain(down.name);
    for (const m of [up1, up2]) {
      expect(await accountExists(m, 'alice')).toBe(false);
      expect((await machine(m.name)).status).toBe('available');
    }
    const d = await machine(down.name);
    expect(d.status).toBe('offline');
    // The reason, which names the account, is for admins; alice sees a neutral word.
    expect(d.status_reason).toBe('cleanup pending');
    const asAdmin = json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${down.name}`, headers: pool.admin.auth }));
    expect(asAdmin.status_reason).toMatch(/may remain|connect/);
    const res = json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${body.reservation_id}`, headers: alice.auth }));
    expect(res.status).toBe('failed');
    // The healthy two still serve a smaller reservation.
    const ok = await reserve({ count: 2 });
    expect(ok.statusCode).toBe(201);
    await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${json(ok).id}`, headers: alice.auth });
  });
});

describe('a machine whose host key changed', () => {
  it('is never given the account: the reservation fails and the machine goes offline', async () => {
    const impostor = pool.machines[0]!;
    await impostor.replace(); // same address, different host key
    const r = await reserve({ machines: [impostor.name, pool.machines[1]!.name] });
    expect(r.statusCode).toBe(502);
    expect(json(r)).toMatchObject({ machine: impostor.name });
    // Why is the machine's business, for admins (the user reads which machine failed).
    expect(json(r).detail).not.toMatch(/host key changed/);
    const asAdmin = json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${json(r).reservation_id}`, headers: pool.admin.auth }));
    expect(asAdmin.failure_reason).toMatch(/host key changed/);
    expect(await accountExists(impostor, 'alice')).toBe(false);
    expect(await accountExists(pool.machines[1]!, 'alice')).toBe(false);
    expect((await machine(impostor.name)).status).toBe('offline');
    expect((await machine(pool.machines[1]!.name)).status).toBe('available');
  });
});

describe('a machine that hangs during release', () => {
  it('keeps a cleanup record: it stays out of the pool until its leftover account is removed', async () => {
    const hung = await createPool(1, { BERTH_SSH_CONNECT_TIMEOUT_MS: '1500' }, 'hang');
    try {
      const u = await userSession(hung.t, 'frank');
      const [m] = hung.machines as [typeof hung.machines[0]];
      const r = json(await hung.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: u.auth, payload: { count: 1 } }));
      await m.pause();
      const out = await hung.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${r.id}`, headers: u.auth });
      expect(json(out).status).toBe('released');
      const get = async () => json(await hung.t.app.inject({ method: 'GET', url: `/v1/machines/${m.name}`, headers: hung.admin.auth }));
      const held = await get();
      expect(held).toMatchObject({ status: 'offline', reservation_id: r.id });
      expect(held.status_reason).toMatch(/cleanup pending/);
      // Maintenance cannot launder it back into the pool.
      const maint = await hung.t.app.inject({ method: 'PUT', url: `/v1/machines/${m.name}/maintenance`, headers: hung.admin.auth, payload: { reason: 'x' } });
      expect(maint.statusCode).toBe(409);

      await m.unpause();
      expect(await accountExists(m, 'frank')).toBe(true); // the leftover is real
      const check = json(await hung.t.app.inject({ method: 'POST', url: `/v1/machines/${m.name}/check`, headers: hung.admin.auth }));
      expect(check).toMatchObject({ reachable: true, status: 'available' });
      expect(await accountExists(m, 'frank')).toBe(false);
      expect((await get()).reservation_id).toBeNull();
    } finally {
      await hung.close();
    }
  });
});
