// A real reservation of a real sshd machine, heard by a real receiver: making it sends
// `reservation.activated` naming the machine, releasing it sends `reservation.released`,
// both signed so that the `standardwebhooks` verifier accepts them, both with the same
// ids the API shows.
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, userSession, type Session } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

let pool: Pool;
let receiver: Receiver;
let alice: Session;

beforeAll(async () => {
  [pool, receiver] = await Promise.all([createPool(1, { BERTH_WEBHOOK_ALLOW_HOSTS: '127.0.0.1/32' }, 'hook'), startReceiver()]);
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
});
