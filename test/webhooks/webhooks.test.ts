// Webhooks against a real HTTP receiver on 127.0.0.1 (let through by BERTH_WEBHOOK_ALLOW_HOSTS
// in this file) and a real database: what POST /v1/webhooks accepts and refuses, who sees
// what, signatures that the `standardwebhooks` verifier accepts, retries (a short schedule,
// set by BERTH_WEBHOOK_RETRY_SECONDS), Retry-After, 410 Gone, redelivery, leases shared by
// two berth instances, and the refusals that keep deliveries out of the host: a name that
// rebinds to loopback between the check and the connection, and a redirect to loopback.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EventName, DomainEvents } from '../../src/events/bus.js';
import type { ResolveHost } from '../../src/modules/webhooks/egress.js';
import { MAX_WEBHOOKS_PER_USER } from '../../src/modules/webhooks/service.js';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

/** Names the test's DNS knows: each lookup takes the next answer, the last one repeats. */
const dnsAnswers = new Map<string, string[][]>();
const resolveHost: ResolveHost = async (name) => {
  const queue = dnsAnswers.get(name);
  if (!queue) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  const answer = queue.length > 1 ? queue.shift()! : queue[0]!;
  return answer.map((address) => ({ address, family: net.isIP(address) }));
};

let t: TestApp;
let logs = '';
let alice: Session;
let bob: Session;
let admin: Session;
let receiver: Receiver;
/** A second receiver on another loopback address, which nothing is allowed to reach. */
let forbidden: Receiver;

beforeAll(async () => {
  const logStream = new PassThrough();
  logStream.on('data', (chunk: Buffer) => (logs += chunk.toString()));
  [t, receiver, forbidden] = await Promise.all([
    createTestApp(
      { LOG_LEVEL: 'debug', BERTH_WEBHOOK_ALLOW_HOSTS: '127.0.0.1/32', BERTH_WEBHOOK_RETRY_SECONDS: '0.2,0.2,0.2', BERTH_WEBHOOK_TIMEOUT_SECONDS: '3' },
      { logStream, resolveHost },
    ),
    startReceiver('127.0.0.1'),
    startReceiver('127.0.0.2'),
  ]);
  [alice, bob, admin] = [await userSession(t, 'alice'), await userSession(t, 'bob'), await adminSession(t)];
});
afterAll(async () => {
  await t?.close();
  await receiver?.close();
  await forbidden?.close();
});
beforeEach(async () => {
  // Each test starts with no webhooks, and a receiver that answers 204.
  await t.prisma.webhook.deleteMany({});
  receiver.received.splice(0);
  forbidden.received.splice(0);
  receiver.answer(() => ({ status: 204 }));
});

async function createWebhook(who: Session, body: Record<string, unknown>) {
  const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: who.auth, payload: body });
  if (res.statusCode !== 201) throw new Error(`create webhook: ${res.statusCode} ${res.body}`);
  return json<{ id: string; secret: string; url: string }>(res);
}

/** A reservation row of `owner` (the payload names it), with no machines. */
async function reservationOf(owner: Session) {
  const r = await t.prisma.reservation.create({
    data: { userId: owner.userId, ownerUsername: owner.username, status: 'active', accountUsername: owner.username, durationMinutes: 60, maxExpiresAt: new Date(Date.now() + 3_600_000) },
  });
  return r.id;
}

const raise = <K extends EventName>(type: K, payload: DomainEvents[K]) => t.app.events.raise(type, payload);
const activated = (reservationId: string, owner: Session) =>
  raise('reservation.changed', { reservationId, userId: owner.userId, from: 'provisioning', to: 'active', reason: null, adminDetail: null });

async function deliveriesOf(who: Session, webhookId: string) {
  const res = await t.app.inject({ method: 'GET', url: `/v1/webhooks/${webhookId}/deliveries`, headers: who.auth });
  expect(res.statusCode, res.body).toBe(200);
  return json<{ items: any[] }>(res).items;
}

/** Runs the delivery job until `probe` answers something, for up to `ms`. */
async function until<T>(probe: () => Promise<T | null | undefined | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) throw new Error('gave up waiting');
    await t.app.jobs.runNow('webhooks');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const body = (events: string[] = ['reservation.activated'], url = receiver.url()) => ({ url, events });

describe('POST /v1/webhooks', () => {
  it('answers 201 with a whsec_ secret of 32 random bytes, shown only then and stored sealed', async () => {
    const created = await createWebhook(alice, { ...body(), description: 'my bot' });
    expect(created).toMatchObject({ url: receiver.url(), events: ['reservation.activated'], description: 'my bot', owner: 'alice', enabled: true, disabled_at: null });
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(created.secret.slice(6), 'base64')).toHaveLength(32);
    const one = await t.app.inject({ method: 'GET', url: `/v1/webhooks/${created.id}`, headers: alice.auth });
    const list = await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: alice.auth });
    const all = await t.app.inject({ method: 'GET', url: '/v1/webhooks?all=true', headers: admin.auth });
    for (const res of [one, list, all]) {
      expect(res.statusCode).toBe(200);
      expect(res.body).not.toContain(created.secret.slice(6));
      expect(res.body).not.toContain('secret');
    }
    const row = await t.prisma.webhook.findUniqueOrThrow({ where: { id: created.id } });
    expect(Buffer.from(row.secretSealed).toString('latin1')).not.toContain(created.secret.slice(6));
    expect(logs).not.toContain(created.secret.slice(6));
  });

  it('refuses what is not a webhook: bad URLs, unknown or repeated events, admin-only events for users, too many', async () => {
    const post = (who: Session, payload: Record<string, unknown>) => t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: who.auth, payload });
    const cases: [Record<string, unknown>, number, string][] = [
      [body(undefined, 'ftp://example.com/x'), 400, 'validation_failed'],
      [body(undefined, 'not a url'), 400, 'validation_failed'],
      [body(undefined, 'https://user:pass@example.com/x'), 400, 'validation_failed'],
      [body(undefined, `https://example.com/${'x'.repeat(2048)}`), 400, 'validation_failed'],
      [body([]), 400, 'validation_failed'],
      [body(['reservation.activated', 'reservation.activated']), 400, 'validation_failed'],
      [body(['reservation.exploded']), 400, 'validation_failed'],
      [{ ...body(), secret: 'mine' }, 400, 'validation_failed'],
      [body(['vm.failed']), 403, 'admin_required'],
      [body(['machine.offline', 'reservation.activated']), 403, 'admin_required'],
    ];
    for (const [payload, status, code] of cases) {
      const res = await post(alice, payload);
      expect([res.statusCode, json(res).code], JSON.stringify(payload).slice(0, 100)).toEqual([status, code]);
    }
    expect((await post(admin, body(['vm.failed', 'machine.offline']))).statusCode).toBe(201);
    for (let i = (await t.prisma.webhook.count({ where: { userId: alice.userId } })); i < MAX_WEBHOOKS_PER_USER; i++) await createWebhook(alice, body());
    const tooMany = await post(alice, body());
    expect([tooMany.statusCode, json(tooMany).code]).toEqual([422, 'webhook_limit_exceeded']);
  });

  it('refuses, when saved, a URL whose host is or resolves to an address webhooks may not reach (unless allowed)', async () => {
    dnsAnswers.set('intranet.test', [['10.0.0.5']]);
    dnsAnswers.set('half.test', [['93.184.215.14', '127.0.0.2']]);
    dnsAnswers.set('public.test', [['93.184.215.14']]);
    for (const url of ['http://127.0.0.2:8080/', 'http://[::1]/', 'http://169.254.169.254/latest', 'http://intranet.test/', 'http://half.test/', 'http://nowhere.test/']) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: alice.auth, payload: body(undefined, url) });
      expect([res.statusCode, json(res).code], url).toEqual([422, 'webhook_url_refused']);
    }
    expect(json(await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: alice.auth, payload: body(undefined, 'http://intranet.test/') })).detail).toMatch(
      /intranet\.test resolves to 10\.0\.0\.5 \(private\)/,
    );
    // Allowed: the receiver's own 127.0.0.1 (BERTH_WEBHOOK_ALLOW_HOSTS), and a public address.
    await createWebhook(alice, body());
    await createWebhook(alice, body(undefined, 'https://public.test/hook'));
  });
});

describe('who sees a webhook', () => {
  it("owner and admin; another user is told it does not exist; only admins list everyone's", async () => {
    const w = await createWebhook(alice, body());
    await createWebhook(bob, body());
    for (const [who, status] of [[alice, 200], [admin, 200], [bob, 404]] as const) {
      expect((await t.app.inject({ method: 'GET', url: `/v1/webhooks/${w.id}`, headers: who.auth })).statusCode).toBe(status);
      expect((await t.app.inject({ method: 'GET', url: `/v1/webhooks/${w.id}/deliveries`, headers: who.auth })).statusCode).toBe(status);
    }
    expect(json(await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: bob.auth })).items.map((x: any) => x.owner)).toEqual(['bob']);
    expect((await t.app.inject({ method: 'GET', url: '/v1/webhooks?all=true', headers: bob.auth })).statusCode).toBe(403);
    expect(json(await t.app.inject({ method: 'GET', url: '/v1/webhooks?all=true', headers: admin.auth })).items.map((x: any) => x.owner).sort()).toEqual(['alice', 'bob']);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${w.id}`, headers: bob.auth })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${w.id}`, headers: alice.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: `/v1/webhooks/${w.id}`, headers: alice.auth })).statusCode).toBe(404);
  });
});

describe('deliveries', () => {
  it('arrive after the event, signed so that the standardwebhooks verifier accepts them', async () => {
    const w = await createWebhook(alice, body(['reservation.activated', 'reservation.released']));
    const id = await reservationOf(alice);
    await activated(id, alice);
    // No job tick asked for: the subscriber's nudge (or the job's interval) sends it. How soon is
    // not asserted: a timed assertion fails on a busy machine.
    const [got] = await receiver.waitFor(1, 15_000);
    const payload = new Webhook(w.secret).verify(got!.body, got!.headers as Record<string, string>) as any;
    expect(payload).toEqual({
      type: 'reservation.activated',
      timestamp: expect.any(String),
      data: { reservation_id: id, owner: 'alice', account_username: 'alice', status: 'active', machines: [], start_at: null, expires_at: null, reason: null },
    });
    expect(got!.headers['content-type']).toBe('application/json');
    expect(got!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    // Another secret does not verify it.
    expect(() => new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`).verify(got!.body, got!.headers as Record<string, string>)).toThrow();
    const [d] = await until(async () => {
      const items = await deliveriesOf(alice, w.id);
      return items[0]?.status === 'delivered' && items;
    });
    expect(d).toMatchObject({ id: got!.headers['webhook-id'], event: 'reservation.activated', status: 'delivered', attempt_count: 1, payload });
    expect(d.attempts).toEqual([{ attempt: 1, at: expect.any(String), duration_ms: expect.any(Number), status_code: 204, error: null, response_body: '' }]);
    expect(logs).not.toContain(w.secret.slice(6));
  });

  it("go to the owner's webhooks and admins'; admins' alone hear the machine's words, failed VMs and machines gone offline", async () => {
    const mine = await createWebhook(alice, body(['reservation.failed', 'reservation.expired', 'reservation.released'], receiver.url('/alice')));
    await createWebhook(bob, body(['reservation.failed'], receiver.url('/bob')));
    await createWebhook(admin, body(['reservation.failed', 'vm.failed', 'machine.offline'], receiver.url('/admin')));
    const id = await reservationOf(alice);
    await raise('reservation.changed', { reservationId: id, userId: alice.userId, from: 'provisioning', to: 'failed', reason: 'a machine could not be set up', adminDetail: 'ssh: connect ECONNREFUSED' });
    await raise('reservation.changed', { reservationId: id, userId: alice.userId, from: 'active', to: 'releasing', reason: 'expired', adminDetail: null });
    await raise('reservation.changed', { reservationId: id, userId: alice.userId, from: 'releasing', to: 'released', reason: 'expired', adminDetail: null });
    const machine = await t.prisma.machine.create({
      data: { name: 'gone-1', host: '127.0.0.1', port: 1, username: 'root', credentialKind: 'password', credential: Buffer.from('x'), tags: {}, status: 'offline', statusReason: 'ssh: timed out' },
    });
    await raise('machine.changed', { machineIds: [machine.id], transition: 'takeOfflineIfIdle', status: 'offline', reservationId: null });
    await raise('vm.changed', { vmId: randomUUID(), machineId: null, name: 'devbox-1', change: 'failed', state: 'failed' });
    await raise('vm.changed', { vmId: randomUUID(), machineId: null, name: 'devbox-2', change: 'booted', state: 'running' });
    await until(async () => receiver.received.length >= 5 && (await t.prisma.webhookDelivery.count({ where: { status: 'pending' } })) === 0);
    const heard = receiver.received.map((r) => [r.path, JSON.parse(r.body).type]).sort();
    expect(heard).toEqual([
      ['/admin', 'machine.offline'],
      ['/admin', 'reservation.failed'],
      ['/admin', 'vm.failed'],
      ['/alice', 'reservation.expired'],
      ['/alice', 'reservation.failed'],
    ]);
    const data = (path: string, type: string) => JSON.parse(receiver.received.find((r) => r.path === path && JSON.parse(r.body).type === type)!.body).data;
    expect(data('/alice', 'reservation.failed')).toMatchObject({ reason: 'a machine could not be set up', status: 'failed' });
    expect(data('/alice', 'reservation.failed')).not.toHaveProperty('admin_detail');
    expect(data('/admin', 'reservation.failed')).toMatchObject({ reason: 'a machine could not be set up', admin_detail: 'ssh: connect ECONNREFUSED' });
    expect(data('/admin', 'machine.offline')).toEqual({ machine_id: machine.id, name: 'gone-1', reason: 'ssh: timed out', transition: 'takeOfflineIfIdle', reservation_id: null });
    expect(data('/admin', 'vm.failed')).toMatchObject({ name: 'devbox-1' });
    expect((await deliveriesOf(alice, mine.id)).map((d) => d.event).sort()).toEqual(['reservation.expired', 'reservation.failed']);
    // Nothing secret in any body.
    expect(receiver.received.map((r) => r.body).join('\n')).not.toMatch(/password|secret|private_key|hash/i);
  });

  it('retry after a failure with the same webhook-id until a 2xx, each attempt recorded', async () => {
    const w = await createWebhook(alice, body());
    receiver.answer((n) => (n < 2 ? { status: 500, body: 'x'.repeat(10_000) } : { status: 200, body: 'ok' }));
    await activated(await reservationOf(alice), alice);
    const d = await until(async () => (await deliveriesOf(alice, w.id)).find((x) => x.status === 'delivered'));
    expect(receiver.received).toHaveLength(3);
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id']))).toEqual(new Set([d.id]));
    for (const r of receiver.received) expect(() => new Webhook(w.secret).verify(r.body, r.headers as Record<string, string>)).not.toThrow();
    expect(d.attempts.map((a: any) => [a.attempt, a.status_code, a.error])).toEqual([
      [1, 500, 'HTTP 500'],
      [2, 500, 'HTTP 500'],
      [3, 200, null],
    ]);
    // The body is kept to its first 4 KB.
    expect(d.attempts[0].response_body).toHaveLength(4096);
  });

  it('give up once the retries are used up (failed), and can be redelivered with the same webhook-id', async () => {
    const w = await createWebhook(alice, body());
    receiver.answer(() => ({ status: 503 }));
    await activated(await reservationOf(alice), alice);
    const failed = await until(async () => (await deliveriesOf(alice, w.id)).find((x) => x.status === 'failed'));
    // One attempt and three retries (BERTH_WEBHOOK_RETRY_SECONDS=0.2,0.2,0.2).
    expect(failed.attempts).toHaveLength(4);
    expect(receiver.received).toHaveLength(4);
    receiver.answer(() => ({ status: 202 }));
    const res = await t.app.inject({ method: 'POST', url: `/v1/webhooks/${w.id}/deliveries/${failed.id}/redeliver`, headers: alice.auth });
    expect(res.statusCode, res.body).toBe(202);
    const again = await until(async () => (await deliveriesOf(alice, w.id)).find((x) => x.status === 'delivered'));
    expect(again.attempts.map((a: any) => [a.attempt, a.status_code])).toEqual([[1, 503], [2, 503], [3, 503], [4, 503], [5, 202]]);
    expect(receiver.received[4]!.headers['webhook-id']).toBe(failed.id);
    expect(receiver.received[4]!.body).toBe(receiver.received[0]!.body);
    // Someone else's, or one that does not exist: not found.
    expect((await t.app.inject({ method: 'POST', url: `/v1/webhooks/${w.id}/deliveries/${failed.id}/redeliver`, headers: bob.auth })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'POST', url: `/v1/webhooks/${w.id}/deliveries/${randomUUID()}/redeliver`, headers: alice.auth })).statusCode).toBe(404);
  });

  it('wait as long as Retry-After asks', async () => {
    const w = await createWebhook(alice, body());
    receiver.answer((n) => (n === 0 ? { status: 429, headers: { 'retry-after': '3' } } : { status: 204 }));
    await activated(await reservationOf(alice), alice);
    await until(async () => (await deliveriesOf(alice, w.id)).find((x) => x.status === 'delivered'));
    const [first, second] = receiver.received;
    // The schedule alone would have retried after 0.2 s.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(2900);
  });

  it('410 Gone disables the webhook: it says so, its other deliveries are cancelled, nothing more is sent', async () => {
    const w = await createWebhook(alice, body(['reservation.activated', 'reservation.extended']));
    receiver.answer(() => ({ status: 410 }));
    const id = await reservationOf(alice);
    await activated(id, alice);
    await until(async () => (await deliveriesOf(alice, w.id)).find((x) => x.status === 'failed'));
    const got = json(await t.app.inject({ method: 'GET', url: `/v1/webhooks/${w.id}`, headers: alice.auth }));
    expect(got).toMatchObject({ enabled: false, disabled_at: expect.any(String), disabled_reason: 'the endpoint answered 410 Gone' });
    await raise('reservation.extended', { reservationId: id, userId: alice.userId, expiresAt: new Date() });
    await t.app.jobs.runNow('webhooks');
    expect(await deliveriesOf(alice, w.id)).toHaveLength(1);
    expect(receiver.received).toHaveLength(1);
    const [d] = await deliveriesOf(alice, w.id);
    const res = await t.app.inject({ method: 'POST', url: `/v1/webhooks/${w.id}/deliveries/${d.id}/redeliver`, headers: alice.auth });
    expect([res.statusCode, json(res).code]).toEqual([409, 'webhook_disabled']);
  });

  it('with a pending one of the same webhook cancelled when it is disabled', async () => {
    const w = await createWebhook(alice, body());
    receiver.answer(() => ({ status: 410 }));
    // One waiting for a retry far ahead, and one due now.
    const waiting = await t.prisma.webhookDelivery.create({ data: { webhookId: w.id, event: 'reservation.activated', payload: '{}', nextAttemptAt: new Date(Date.now() + 3_600_000) } });
    await activated(await reservationOf(alice), alice);
    await until(async () => (await t.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: waiting.id } })).status === 'cancelled');
  });
});

describe('no way into the host', () => {
  it('refuses at connect time a name that resolved to a public address when saved and to loopback now (DNS rebinding)', async () => {
    dnsAnswers.set('rebind.test', [['93.184.215.14'], ['127.0.0.2']]);
    const w = await createWebhook(alice, body(undefined, `http://rebind.test:${forbidden.port}/hook`));
    await activated(await reservationOf(alice), alice);
    const [d] = await until(async () => {
      const items = await deliveriesOf(alice, w.id);
      return items[0]?.attempts.length > 0 && items;
    });
    expect(d.attempts[0]).toMatchObject({ status_code: null, error: expect.stringMatching(/rebind\.test resolves to 127\.0\.0\.2 \(loopback\)/) });
    expect(forbidden.received).toEqual([]);
  });

  it('does not follow a redirect to loopback: the 3xx is a failed attempt', async () => {
    const w = await createWebhook(alice, body());
    receiver.answer(() => ({ status: 302, headers: { location: forbidden.url('/stolen') } }));
    await activated(await reservationOf(alice), alice);
    const [d] = await until(async () => {
      const items = await deliveriesOf(alice, w.id);
      return items[0]?.attempts.length > 0 && items;
    });
    expect(d.attempts[0]).toMatchObject({ status_code: 302, error: 'HTTP 302: redirects are not followed' });
    expect(d.status).not.toBe('delivered');
    expect(forbidden.received).toEqual([]);
  });
});

describe('several berth processes on one database', () => {
  it('send each delivery once, and take over one whose lease ran out (its process died mid-send)', async () => {
    const other = await createTestApp({ BERTH_WEBHOOK_ALLOW_HOSTS: '127.0.0.1/32' }, { shareWith: t, instanceId: 'other' });
    try {
      const w = await createWebhook(alice, body());
      const rows = Array.from({ length: 40 }, (_, i) => ({ id: randomUUID(), webhookId: w.id, event: 'reservation.activated', payload: JSON.stringify({ n: i }), nextAttemptAt: new Date() }));
      // One claimed by a process that died a while ago, one by a process at work now.
      rows.push({ ...rows[0]!, id: randomUUID(), payload: '{"dead":true}' });
      const live = { ...rows[0]!, id: randomUUID(), payload: '{"live":true}' };
      await t.prisma.webhookDelivery.createMany({
        data: [
          ...rows.slice(0, -1),
          { ...rows[rows.length - 1]!, leaseOwner: 'dead/1', leaseUntil: new Date(Date.now() - 1000) },
          { ...live, leaseOwner: 'busy/1', leaseUntil: new Date(Date.now() + 600_000) },
        ],
      });
      await Promise.all([t.app.jobs.runNow('webhooks'), other.app.jobs.runNow('webhooks'), t.app.jobs.runNow('webhooks'), other.app.jobs.runNow('webhooks')]);
      await until(async () => (await t.prisma.webhookDelivery.count({ where: { webhookId: w.id, status: 'delivered' } })) === rows.length);
      const ids = receiver.received.map((r) => r.headers['webhook-id']);
      expect(ids.sort()).toEqual(rows.map((r) => r.id).sort());
      expect(await t.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: live.id } })).toMatchObject({ status: 'pending', attempts: 0 });
    } finally {
      await other.close();
    }
  });
});
