// A real reservation of a real sshd machine, heard by a real receiver: making it sends
// `reservation.activated` naming the machine, releasing it sends `reservation.released`,
// both signed so that the `standardwebhooks` verifier accepts them, both with the same
// ids the API shows. Someone who asks "when free" hears `reservation.queued`, then
// `reservation.activated` once machines come free; a booking is heard as
// `reservation.scheduled`; a wait that runs out as `reservation.expired`.
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, userSession, type Session } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

let pool: Pool;
let receiver: Receiver;
let alice: Session;

beforeAll(async () => {
  [pool, receiver] = await Promise.all([createPool(1, { BERTH_WEBHOOK_ALLOW_HOSTS: '127.0.0.1/32', BERTH_SCHEDULER_INTERVAL_SECONDS: '1' }, 'hook'), startReceiver()]);
  alice = await userSession(pool.t, 'alice');
});
afterAll(async () => {
  await pool?.close();
  await receiver?.close();
});

describe('a reservation heard by a webhook', () => {
  it('sends reservation.activated when it is made and reservation.released when it is given back', async () => {
    const { app } = pool.t;
    const created = await app.inject({
      method: 'POST',
      url: '/v1/webhooks',
      headers: alice.auth,
      payload: { url: receiver.url(), events: ['reservation.activated', 'reservation.released', 'reservation.expired'] },
    });
    expect(created.statusCode, created.body).toBe(201);
    const { id: webhookId, secret } = json(created);

    const reserved = await app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload: { count: 1 } });
    expect(reserved.statusCode, reserved.body).toBe(201);
    const reservation = json(reserved);
    const [activated] = await receiver.waitFor(1, 5000);
    const verify = (r: typeof activated) => new Webhook(secret).verify(r!.body, r!.headers as Record<string, string>) as { type: string; data: Record<string, unknown> };
    expect(verify(activated)).toMatchObject({
      type: 'reservation.activated',
      data: { reservation_id: reservation.id, owner: 'alice', status: 'active', machines: [pool.machines[0]!.name], expires_at: reservation.expires_at },
    });

    const released = await app.inject({ method: 'DELETE', url: `/v1/reservations/${reservation.id}`, headers: alice.auth });
    expect(released.statusCode, released.body).toBe(200);
    const [, gone] = await receiver.waitFor(2, 10_000);
    expect(verify(gone)).toMatchObject({ type: 'reservation.released', data: { reservation_id: reservation.id, status: 'released', reason: 'released' } });
    expect(receiver.received).toHaveLength(2);

    // The receiver has both; their attempts are recorded a moment after it answered.
    const delivered = async () => {
      const items = json(await app.inject({ method: 'GET', url: `/v1/webhooks/${webhookId}/deliveries`, headers: alice.auth })).items;
      return items.map((d: { event: string; status: string }) => [d.event, d.status]);
    };
    await expect.poll(delivered, { timeout: 5000 }).toEqual([
      ['reservation.released', 'delivered'],
      ['reservation.activated', 'delivered'],
    ]);
    // Nothing of the account's credentials in what was sent.
    expect(receiver.received.map((r) => r.body).join('\n')).not.toMatch(/password|private_key|ssh-ed25519/);
  });

  it('tells someone who waits when the machines are theirs: queued, then activated; a booking is scheduled; a wait that runs out expires', async () => {
    const { app } = pool.t;
    const bob = await userSession(pool.t, 'bob');
    const created = json(
      await app.inject({
        method: 'POST',
        url: '/v1/webhooks',
        headers: bob.auth,
        payload: { url: receiver.url('/bob'), events: ['reservation.queued', 'reservation.scheduled', 'reservation.activated', 'reservation.expired'] },
      }),
    );
    const verify = (r: { body: string; headers: Record<string, unknown> }) => new Webhook(created.secret).verify(r.body, r.headers as Record<string, string>) as { type: string; data: Record<string, unknown> };
    // What bob's webhook heard (alice's, from the test before, hears her reservations at its own path).
    const heard = async (n: number) => {
      await expect.poll(() => receiver.received.filter((r) => r.path === '/bob').length, { timeout: 15_000, interval: 100 }).toBeGreaterThanOrEqual(n);
      return receiver.received.filter((r) => r.path === '/bob').map((r) => verify(r));
    };

    // The one machine is alice's; bob waits for it, goes for coffee.
    const held = json(await app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload: { count: 1 } }));
    const waiting = await app.inject({ method: 'POST', url: '/v1/reservations', headers: bob.auth, payload: { count: 1, wait_minutes: 60 } });
    expect(waiting.statusCode, waiting.body).toBe(202);
    const queued = json(waiting);
    expect((await heard(1))[0]).toMatchObject({ type: 'reservation.queued', data: { reservation_id: queued.id, owner: 'bob', status: 'queued' } });

    // A booking for tomorrow is heard too.
    const booking = json(await app.inject({ method: 'POST', url: '/v1/reservations', headers: bob.auth, payload: { count: 1, start_at: new Date(Date.now() + 86_400_000).toISOString(), duration_minutes: 30 } }));
    expect((await heard(2))[1]).toMatchObject({ type: 'reservation.scheduled', data: { reservation_id: booking.id, status: 'scheduled' } });

    // alice gives the machine back: bob's request starts, and he hears it.
    await app.inject({ method: 'DELETE', url: `/v1/reservations/${held.id}`, headers: alice.auth });
    expect((await heard(3))[2]).toMatchObject({ type: 'reservation.activated', data: { reservation_id: queued.id, machines: [pool.machines[0]!.name] } });

    // Another wait, on a pool bob now holds, runs out (brought forward in the database).
    const second = json(await app.inject({ method: 'POST', url: '/v1/reservations', headers: bob.auth, payload: { count: 1, wait_minutes: 1 } }));
    await pool.t.prisma.reservation.update({ where: { id: second.id }, data: { waitUntil: new Date(Date.now() - 1000) } });
    const all = await heard(5);
    expect(all[3]).toMatchObject({ type: 'reservation.queued', data: { reservation_id: second.id } });
    expect(all[4]).toMatchObject({ type: 'reservation.expired', data: { reservation_id: second.id, reason: 'expired' } });
    for (const id of [queued.id, booking.id]) await app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: bob.auth });
  });
});
