// For every route: what anonymous, the user, another user and an admin get. Resources in
// the table belong to "the user"; destructive rows make a fresh victim for each actor so
// the answers do not depend on the order of the columns.
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, adminSession, createTestApp, json, login, register, userSession, type Session, type TestApp } from './helpers/app.js';
import { BASE_IMAGE, rootKey, startMachines, type TestMachine } from './helpers/ssh-machines.js';

type Actor = 'anonymous' | 'user' | 'other' | 'admin';
const ACTORS: Actor[] = ['anonymous', 'user', 'other', 'admin'];

let t: TestApp;
let machines: TestMachine[];
let sessions: Record<Exclude<Actor, 'anonymous'>, Session>;
let counter = 0;
const unique = (prefix: string) => `${prefix}${++counter}`;

beforeAll(async () => {
  [t, machines] = await Promise.all([createTestApp(), startMachines(4, 'acl')]);
  sessions = {
    user: await userSession(t, 'alice'),
    other: await userSession(t, 'bob'),
    admin: await adminSession(t),
  };
  for (const m of machines) {
    await t.app.inject({
      method: 'POST',
      url: '/v1/machines',
      headers: sessions.admin.auth,
      payload: { name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey },
    });
  }
});
afterAll(async () => {
  await t.close();
  await Promise.all(machines.map((m) => m.stop()));
});

/** A machine record nobody reserves (its address answers nothing), for admin-only rows. */
async function spareMachine(maintenance = false): Promise<string> {
  const name = unique('spare');
  await t.app.inject({
    method: 'POST',
    url: '/v1/machines',
    headers: sessions.admin.auth,
    payload: { name, host: '127.0.0.1', port: 1, username: 'root', password: 'unused', type: 'spare' },
  });
  if (maintenance) {
    await t.app.inject({ method: 'PUT', url: `/v1/machines/${name}/maintenance`, headers: sessions.admin.auth, payload: { reason: 'test' } });
  }
  return name;
}

/** A spare machine as a sudo tenant's release leaves it (set directly: the release is tenant-root.test.ts's business). */
async function machineToReprovision(): Promise<string> {
  const name = await spareMachine();
  await t.prisma.machine.update({ where: { name }, data: { status: 'needs_reprovision', sudoGranted: true } });
  return name;
}

/** A fresh active reservation of one real machine, owned by "the user". */
async function usersReservation(): Promise<string> {
  const res = await t.app.inject({ method: 'POST', url: '/v1/reservations', headers: sessions.user.auth, payload: { count: 1, type: 'server' } });
  if (res.statusCode !== 201) throw new Error(`reserve: ${res.statusCode} ${res.body}`);
  return json(res).id;
}

/** An image record whose build has ended (failed), for the read and delete rows. */
async function finishedImage(): Promise<string> {
  const image = await t.prisma.image.create({ data: { name: unique('done'), status: 'failed', error: 'test record' } });
  return image.id;
}

/**
 * A VM record (stopped, never booted) of a failed image, for the VM rows. Booting is the
 * VM tests' business (test/vms); here starting or resetting it reaches the image check
 * (409 image_not_ready), past the access rule, which is what these rows are about.
 */
async function recordedVm(): Promise<string> {
  const image = await t.prisma.image.create({ data: { name: unique('vmimg'), status: 'failed', error: 'test record' } });
  const vm = await t.prisma.vm.create({
    data: {
      name: unique('vm'),
      imageId: image.id,
      state: 'stopped',
      node: t.config.nodeName,
      cpus: 1,
      memoryMb: 256,
      sshPort: 40_000 + counter,
      hostKeyFingerprint: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      hostKeyPublic: 'ssh-ed25519 AAAA',
      hostKeySealed: Buffer.from('unused'),
      rootKeyPublic: 'ssh-ed25519 AAAA',
    },
  });
  return vm.id;
}

/**
 * A webhook of "the user" (written directly: its URL, a documentation address, is refused at
 * connect time, so nothing ever leaves the host), with one finished delivery.
 */
async function usersWebhook(): Promise<{ id: string; deliveryId: string }> {
  const webhook = await t.prisma.webhook.create({
    data: { userId: sessions.user.userId, url: 'http://192.0.2.1/hook', events: ['reservation.expiring'], secretSealed: Buffer.from('unused') },
  });
  const delivery = await t.prisma.webhookDelivery.create({ data: { webhookId: webhook.id, event: 'reservation.expiring', payload: '{}', status: 'failed', nextAttemptAt: new Date() } });
  return { id: webhook.id, deliveryId: delivery.id };
}

const releaseEverything = async () => {
  await t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: sessions.admin.auth });
};

/** A fresh login of the actor, for rows that end or change the session they use. */
async function freshAuth(actor: Actor): Promise<Record<string, string>> {
  if (actor === 'anonymous') return {};
  return (await login(t.app, sessions[actor].username)).auth;
}

interface Row {
  route: string;
  expected: Record<Actor, number>;
  request(actor: Actor): Promise<InjectOptions>;
  /** Runs after each actor's request (gives machines back to the pool). */
  cleanup?(): Promise<void>;
}

const open = (n: number) => ({ anonymous: n, user: n, other: n, admin: n });
const bearerOnly = (ok: number) => ({ anonymous: 401, user: ok, other: ok, admin: ok });
const adminOnly = (ok: number) => ({ anonymous: 401, user: 403, other: 403, admin: ok });

const rows: Row[] = [
  { route: 'GET /healthz', expected: open(200), request: async (a) => ({ method: 'GET', url: '/healthz', headers: await freshAuth(a) }) },
  { route: 'GET /readyz', expected: open(200), request: async (a) => ({ method: 'GET', url: '/readyz', headers: await freshAuth(a) }) },
  { route: 'GET /openapi.json', expected: open(200), request: async () => ({ method: 'GET', url: '/openapi.json' }) },
  { route: 'GET /docs/', expected: open(200), request: async () => ({ method: 'GET', url: '/docs/' }) },
  { route: 'GET /.well-known/jwks.json', expected: open(200), request: async () => ({ method: 'GET', url: '/.well-known/jwks.json' }) },
  {
    route: 'POST /v1/register',
    expected: open(201),
    request: async (a) => ({ method: 'POST', url: '/v1/register', headers: await freshAuth(a), payload: { username: unique('reg'), password: PASSWORD } }),
  },
  {
    // The credentials are the identity here; "anonymous" sends none.
    route: 'POST /v1/token',
    expected: { anonymous: 400, user: 200, other: 200, admin: 200 },
    request: async (a) => ({
      method: 'POST',
      url: '/v1/token',
      ...(a !== 'anonymous' && { payload: { username: sessions[a].username, password: PASSWORD } }),
    }),
  },
  {
    route: 'POST /v1/token/refresh',
    expected: { anonymous: 400, user: 200, other: 200, admin: 200 },
    request: async (a) => ({
      method: 'POST',
      url: '/v1/token/refresh',
      ...(a !== 'anonymous' && { payload: { refresh_token: (await login(t.app, sessions[a].username)).refreshToken } }),
    }),
  },
  { route: 'POST /v1/token/verify', expected: bearerOnly(200), request: async (a) => ({ method: 'POST', url: '/v1/token/verify', headers: await freshAuth(a) }) },
  { route: 'POST /v1/logout', expected: bearerOnly(204), request: async (a) => ({ method: 'POST', url: '/v1/logout', headers: await freshAuth(a) }) },
  { route: 'GET /v1/whoami', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/whoami', headers: await freshAuth(a) }) },
  {
    route: 'POST /v1/password/change',
    expected: bearerOnly(200),
    request: async (a) => ({
      method: 'POST',
      url: '/v1/password/change',
      headers: await freshAuth(a),
      // Same password again: the rule under test is who may call, not what changes.
      payload: { current_password: PASSWORD, new_password: PASSWORD },
    }),
  },
  { route: 'GET /v1/sessions', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/sessions', headers: await freshAuth(a) }) },
  {
    route: "DELETE /v1/sessions/{the user's session}",
    expected: { anonymous: 401, user: 204, other: 404, admin: 204 },
    request: async (a) => {
      const victim = await login(t.app, 'alice');
      return { method: 'DELETE', url: `/v1/sessions/${victim.sessionId}`, headers: await freshAuth(a) };
    },
  },
  {
    route: 'POST /v1/users',
    expected: adminOnly(201),
    request: async (a) => ({ method: 'POST', url: '/v1/users', headers: await freshAuth(a), payload: { username: unique('made'), password: PASSWORD } }),
  },
  { route: 'GET /v1/users', expected: adminOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/users', headers: await freshAuth(a) }) },
  {
    route: 'GET /v1/users/{the user}',
    expected: { anonymous: 401, user: 200, other: 403, admin: 200 },
    request: async (a) => ({ method: 'GET', url: `/v1/users/${sessions.user.userId}`, headers: await freshAuth(a) }),
  },
  {
    route: 'PATCH /v1/users/{the user} {email}',
    expected: { anonymous: 401, user: 200, other: 403, admin: 200 },
    request: async (a) => ({
      method: 'PATCH',
      url: `/v1/users/${sessions.user.userId}`,
      headers: await freshAuth(a),
      payload: { email: `${unique('mail')}@example.com` },
    }),
  },
  {
    route: 'PATCH /v1/users/{the user} {role}',
    expected: { anonymous: 401, user: 403, other: 403, admin: 200 },
    request: async (a) => ({ method: 'PATCH', url: `/v1/users/${sessions.user.userId}`, headers: await freshAuth(a), payload: { role: 'user' } }),
  },
  {
    // Each actor tries to delete a fresh user; "user" is that fresh user deleting themself.
    route: 'DELETE /v1/users/{a user}',
    expected: adminOnly(204),
    request: async (a) => {
      const victim = await register(t.app, unique('victim'));
      const headers = a === 'user' ? (await login(t.app, victim.username)).auth : await freshAuth(a);
      return { method: 'DELETE', url: `/v1/users/${victim.id}`, headers };
    },
  },
  {
    route: 'POST /v1/machines',
    expected: adminOnly(201),
    request: async (a) => ({
      method: 'POST',
      url: '/v1/machines',
      headers: await freshAuth(a),
      payload: { name: unique('new'), host: '127.0.0.1', port: 1, username: 'root', password: 'unused', type: 'spare' },
    }),
  },
  {
    route: 'POST /v1/machines/import',
    expected: adminOnly(200),
    request: async (a) => ({
      method: 'POST',
      url: '/v1/machines/import',
      headers: await freshAuth(a),
      payload: { machines: [{ name: unique('imp'), host: '127.0.0.1', port: 1, user: 'root', password: 'x', type: 'spare' }] },
    }),
  },
  { route: 'GET /v1/machines', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/machines', headers: await freshAuth(a) }) },
  {
    route: 'GET /v1/machines/{name}',
    expected: bearerOnly(200),
    request: async (a) => ({ method: 'GET', url: `/v1/machines/${machines[0]!.name}`, headers: await freshAuth(a) }),
  },
  {
    route: 'PATCH /v1/machines/{name}',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'PATCH', url: `/v1/machines/${await spareMachine()}`, headers: await freshAuth(a), payload: { tags: { x: 'y' } } }),
  },
  {
    route: 'DELETE /v1/machines/{name}',
    expected: adminOnly(204),
    request: async (a) => ({ method: 'DELETE', url: `/v1/machines/${await spareMachine()}`, headers: await freshAuth(a) }),
  },
  {
    route: 'PUT /v1/machines/{name}/maintenance',
    expected: adminOnly(200),
    request: async (a) => ({
      method: 'PUT',
      url: `/v1/machines/${await spareMachine()}/maintenance`,
      headers: await freshAuth(a),
      payload: { reason: 'disk' },
    }),
  },
  {
    route: 'DELETE /v1/machines/{name}/maintenance',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'DELETE', url: `/v1/machines/${await spareMachine(true)}/maintenance`, headers: await freshAuth(a) }),
  },
  {
    route: 'POST /v1/machines/{name}/reprovisioned',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'POST', url: `/v1/machines/${await machineToReprovision()}/reprovisioned`, headers: await freshAuth(a) }),
  },
  {
    route: 'POST /v1/machines/{name}/check',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'POST', url: `/v1/machines/${await spareMachine()}/check`, headers: await freshAuth(a) }),
  },
  { route: 'GET /v1/pool', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/pool', headers: await freshAuth(a) }) },
  {
    route: 'GET /v1/machines/{name}/schedule',
    expected: bearerOnly(200),
    request: async (a) => ({ method: 'GET', url: `/v1/machines/${machines[0]!.name}/schedule`, headers: await freshAuth(a) }),
  },
  {
    route: 'GET /v1/pool/availability',
    expected: bearerOnly(200),
    request: async (a) => ({ method: 'GET', url: '/v1/pool/availability?type=server', headers: await freshAuth(a) }),
  },
  {
    route: 'POST /v1/reservations',
    expected: bearerOnly(201),
    request: async (a) => ({ method: 'POST', url: '/v1/reservations', headers: await freshAuth(a), payload: { count: 1, type: 'server', username: unique('acct') } }),
    cleanup: releaseEverything,
  },
  { route: 'GET /v1/reservations', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/reservations', headers: await freshAuth(a) }) },
  {
    route: "GET /v1/reservations/{the user's}",
    expected: { anonymous: 401, user: 200, other: 404, admin: 200 },
    request: async (a) => ({ method: 'GET', url: `/v1/reservations/${await usersReservation()}`, headers: await freshAuth(a) }),
    cleanup: releaseEverything,
  },
  {
    route: "POST /v1/reservations/{the user's}/extend",
    expected: { anonymous: 401, user: 200, other: 404, admin: 200 },
    request: async (a) => ({
      method: 'POST',
      url: `/v1/reservations/${await usersReservation()}/extend`,
      headers: await freshAuth(a),
      payload: { minutes: 5 },
    }),
    cleanup: releaseEverything,
  },
  {
    route: "DELETE /v1/reservations/{the user's}",
    expected: { anonymous: 401, user: 200, other: 404, admin: 200 },
    request: async (a) => ({ method: 'DELETE', url: `/v1/reservations/${await usersReservation()}`, headers: await freshAuth(a) }),
    cleanup: releaseEverything,
  },
  {
    // Each admin request starts a real (tiny) build; closing the app waits for it.
    route: 'POST /v1/images',
    expected: adminOnly(202),
    request: async (a) => ({
      method: 'POST',
      url: '/v1/images',
      headers: await freshAuth(a),
      payload: { name: unique('img'), dockerfile: `FROM ${BASE_IMAGE}\n` },
    }),
  },
  { route: 'GET /v1/images', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/images', headers: await freshAuth(a) }) },
  {
    route: 'GET /v1/images/{id}',
    expected: bearerOnly(200),
    request: async (a) => ({ method: 'GET', url: `/v1/images/${await finishedImage()}`, headers: await freshAuth(a) }),
  },
  {
    // A build's output may hold secrets or internal addresses: admins only.
    route: 'GET /v1/images/{id}/log',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'GET', url: `/v1/images/${await finishedImage()}/log`, headers: await freshAuth(a) }),
  },
  {
    route: 'DELETE /v1/images/{id}',
    expected: adminOnly(204),
    request: async (a) => ({ method: 'DELETE', url: `/v1/images/${await finishedImage()}`, headers: await freshAuth(a) }),
  },
  {
    route: 'POST /v1/vms',
    expected: adminOnly(409),
    request: async (a) => ({ method: 'POST', url: '/v1/vms', headers: await freshAuth(a), payload: { image: await finishedImage() } }),
  },
  { route: 'GET /v1/vms', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/vms', headers: await freshAuth(a) }) },
  {
    route: 'GET /v1/vms/{id}',
    expected: bearerOnly(200),
    request: async (a) => ({ method: 'GET', url: `/v1/vms/${await recordedVm()}`, headers: await freshAuth(a) }),
  },
  ...(['reset', 'start'] as const).map((action) => ({
    route: `POST /v1/vms/{id}/${action}`,
    expected: adminOnly(409),
    request: async (a: Actor) => ({ method: 'POST' as const, url: `/v1/vms/${await recordedVm()}/${action}`, headers: await freshAuth(a) }),
  })),
  {
    route: 'POST /v1/vms/{id}/stop',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'POST', url: `/v1/vms/${await recordedVm()}/stop`, headers: await freshAuth(a) }),
  },
  {
    route: 'DELETE /v1/vms/{id}',
    expected: adminOnly(204),
    request: async (a) => ({ method: 'DELETE', url: `/v1/vms/${await recordedVm()}`, headers: await freshAuth(a) }),
  },
  {
    route: 'GET /v1/vms/{id}/console',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'GET', url: `/v1/vms/${await recordedVm()}/console`, headers: await freshAuth(a) }),
  },
  {
    route: 'PUT /v1/images/{id}/pool',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'PUT', url: `/v1/images/${await finishedImage()}/pool`, headers: await freshAuth(a), payload: { size: 0 } }),
  },
  {
    // A public address, and an event nothing here raises: nothing is sent.
    route: 'POST /v1/webhooks',
    expected: bearerOnly(201),
    request: async (a) => ({ method: 'POST', url: '/v1/webhooks', headers: await freshAuth(a), payload: { url: 'https://93.184.215.14/hook', events: ['reservation.expiring'] } }),
  },
  { route: 'GET /v1/webhooks', expected: bearerOnly(200), request: async (a) => ({ method: 'GET', url: '/v1/webhooks', headers: await freshAuth(a) }) },
  {
    route: "GET /v1/webhooks/{the user's}",
    expected: { anonymous: 401, user: 200, other: 404, admin: 200 },
    request: async (a) => ({ method: 'GET', url: `/v1/webhooks/${(await usersWebhook()).id}`, headers: await freshAuth(a) }),
  },
  {
    route: "DELETE /v1/webhooks/{the user's}",
    expected: { anonymous: 401, user: 204, other: 404, admin: 204 },
    request: async (a) => ({ method: 'DELETE', url: `/v1/webhooks/${(await usersWebhook()).id}`, headers: await freshAuth(a) }),
  },
  {
    route: "GET /v1/webhooks/{the user's}/deliveries",
    expected: { anonymous: 401, user: 200, other: 404, admin: 200 },
    request: async (a) => ({ method: 'GET', url: `/v1/webhooks/${(await usersWebhook()).id}/deliveries`, headers: await freshAuth(a) }),
  },
  {
    route: "POST /v1/webhooks/{the user's}/deliveries/{one}/redeliver",
    expected: { anonymous: 401, user: 202, other: 404, admin: 202 },
    request: async (a) => {
      const { id, deliveryId } = await usersWebhook();
      return { method: 'POST', url: `/v1/webhooks/${id}/deliveries/${deliveryId}/redeliver`, headers: await freshAuth(a) };
    },
  },
  {
    route: 'POST /v1/reservations/release-all',
    expected: adminOnly(200),
    request: async (a) => ({ method: 'POST', url: '/v1/reservations/release-all', headers: await freshAuth(a) }),
  },
];

describe('access matrix', () => {
  for (const row of rows) {
    it(row.route, async () => {
      const got: Record<string, number> = {};
      const bodies: string[] = [];
      for (const actor of ACTORS) {
        const res = await t.app.inject(await row.request(actor));
        got[actor] = res.statusCode;
        if (res.statusCode !== row.expected[actor]) bodies.push(`${actor}: ${res.body.slice(0, 300)}`);
        await row.cleanup?.();
      }
      expect(got, bodies.join('\n')).toEqual(row.expected);
    });
  }

  it('has a row for every operation in the OpenAPI document', () => {
    const norm = (route: string) => route.replace(/\{[^}]*\}/g, '{}').split(' ').slice(0, 2).join(' ');
    const covered = new Set(rows.map((r) => norm(r.route)));
    const spec = t.app.swagger() as { paths: Record<string, Record<string, unknown>> };
    const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => norm(`${method.toUpperCase()} ${path}`)),
    );
    expect(operations.length).toBeGreaterThan(30);
    expect(operations.filter((op) => !covered.has(op))).toEqual([]);
  });
});
