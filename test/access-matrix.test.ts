// For every route: what anonymous, the user, another user and an admin get. Resources in
// the table belong to "the user"; destructive rows make a fresh victim for each actor so
// the answers do not depend on the order of the columns.
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, adminSession, createTestApp, login, register, userSession, type Session, type TestApp } from './helpers/app.js';

type Actor = 'anonymous' | 'user' | 'other' | 'admin';
const ACTORS: Actor[] = ['anonymous', 'user', 'other', 'admin'];

let t: TestApp;
let sessions: Record<Exclude<Actor, 'anonymous'>, Session>;
let counter = 0;
const unique = (prefix: string) => `${prefix}${++counter}`;

beforeAll(async () => {
  t = await createTestApp();
  sessions = {
    user: await userSession(t, 'alice'),
    other: await userSession(t, 'bob'),
    admin: await adminSession(t),
  };
});
afterAll(() => t.close());

/** A fresh login of the actor, for rows that end or change the session they use. */
async function freshAuth(actor: Actor): Promise<Record<string, string>> {
  if (actor === 'anonymous') return {};
  return (await login(t.app, sessions[actor].username)).auth;
}

interface Row {
  route: string;
  expected: Record<Actor, number>;
  request(actor: Actor): Promise<InjectOptions>;
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
];

describe('access matrix', () => {
  for (const row of rows) {
    it(row.route, async () => {
      const got: Record<string, number> = {};
      for (const actor of ACTORS) got[actor] = (await t.app.inject(await row.request(actor))).statusCode;
      expect(got).toEqual(row.expected);
    });
  }

  it('has a row for every operation in the OpenAPI document', () => {
    const norm = (route: string) => route.replace(/\{[^}]*\}/g, '{}').split(' ').slice(0, 2).join(' ');
    const covered = new Set(rows.map((r) => norm(r.route)));
    const spec = t.app.swagger() as { paths: Record<string, Record<string, unknown>> };
    const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => norm(`${method.toUpperCase()} ${path}`)),
    );
    expect(operations.length).toBeGreaterThan(15);
    expect(operations.filter((op) => !covered.has(op))).toEqual([]);
  });
});
