import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, adminSession, createTestApp, json, login, register, userSession, type Session, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: Session;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t, 'boss');
});
afterAll(() => t.close());

const as = (s: Session) => s.auth;

describe('POST /v1/users', () => {
  it('creates users with a role, and refuses taken names and weak passwords', async () => {
    const res = await t.app.inject({
      method: 'POST', url: '/v1/users', headers: as(admin),
      payload: { username: 'ops', password: PASSWORD, email: 'ops@example.com', role: 'admin' },
    });
    expect(res.statusCode).toBe(201);
    expect(json(res)).toMatchObject({ username: 'ops', role: 'admin', email: 'ops@example.com' });
    const taken = await t.app.inject({ method: 'POST', url: '/v1/users', headers: as(admin), payload: { username: 'ops', password: PASSWORD } });
    expect(json(taken)).toMatchObject({ status: 409, code: 'username_taken' });
    const weak = await t.app.inject({ method: 'POST', url: '/v1/users', headers: as(admin), payload: { username: 'weak', password: 'qwertyuiop' } });
    expect(weak.statusCode).toBe(400);
    const badRole = await t.app.inject({ method: 'POST', url: '/v1/users', headers: as(admin), payload: { username: 'x1', password: PASSWORD, role: 'root' } });
    expect(json(badRole).errors[0].pointer).toBe('/role');
  });
});

describe('GET /v1/users', () => {
  it('filters by role, email and q, and pages by username', async () => {
    await register(t.app, 'zed', PASSWORD, 'zed@corp.example');
    await register(t.app, 'amy', PASSWORD, 'amy@corp.example');
    await register(t.app, 'max', PASSWORD, 'max@home.example');
    const get = async (qs: string) => json(await t.app.inject({ method: 'GET', url: `/v1/users?${qs}`, headers: as(admin) }));
    const names = (b: { items: { username: string }[] }) => b.items.map((u) => u.username);

    expect(names(await get('role=admin'))).toEqual(['boss', 'ops']);
    expect(names(await get('email=zed@corp.example'))).toEqual(['zed']);
    expect(names(await get('q=corp'))).toEqual(['amy', 'zed']);
    expect(names(await get('q=ma'))).toEqual(['max']);

    const first = await get('limit=2');
    expect(names(first)).toEqual(['amy', 'boss']);
    const second = await get(`limit=2&cursor=${first.next_cursor}`);
    expect(names(second)).toEqual(['max', 'ops']);
    const all = await get('limit=200');
    expect(all.next_cursor).toBeNull();
    expect(JSON.stringify(all)).not.toContain('argon2');
    expect((await t.app.inject({ method: 'GET', url: '/v1/users?role=god', headers: as(admin) })).statusCode).toBe(400);
  });
});

describe('PATCH /v1/users/{id}', () => {
  it('lets a user change only their own email', async () => {
    const u = await userSession(t, 'pat');
    const ok = await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(u), payload: { email: 'pat@example.com' } });
    expect(json(ok).email).toBe('pat@example.com');
    const role = await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(u), payload: { role: 'admin' } });
    expect(json(role)).toMatchObject({ status: 403, code: 'field_not_allowed' });
    const row = await t.prisma.user.findUniqueOrThrow({ where: { id: u.userId } });
    expect(row.role).toBe('user');
  });

  it('rejects an empty patch and unknown fields with 400', async () => {
    const u = await login(t.app, 'pat');
    expect((await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(u), payload: {} })).statusCode).toBe(400);
    const unknown = await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(u), payload: { username: 'root' } });
    expect(unknown.statusCode).toBe(400);
  });

  it('applies a promotion to the next request, without a new login', async () => {
    const u = await userSession(t, 'riley');
    expect((await t.app.inject({ method: 'GET', url: '/v1/users', headers: as(u) })).statusCode).toBe(403);
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(admin), payload: { role: 'admin' } });
    expect((await t.app.inject({ method: 'GET', url: '/v1/users', headers: as(u) })).statusCode).toBe(200);
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(admin), payload: { role: 'user' } });
    expect((await t.app.inject({ method: 'GET', url: '/v1/users', headers: as(u) })).statusCode).toBe(403);
  });

  it('disabling a user ends their sessions and blocks login', async () => {
    const u = await userSession(t, 'dora');
    const res = await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(admin), payload: { disabled: true } });
    expect(json(res).disabled).toBe(true);
    expect((await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: as(u) })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: u.refreshToken } })).statusCode).toBe(401);
    const blocked = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'dora', password: PASSWORD } });
    expect(json(blocked)).toMatchObject({ status: 403, code: 'account_disabled' });
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(admin), payload: { disabled: false } });
    await login(t.app, 'dora');
  });

  it('an admin password reset ends the user’s sessions and sets the new password', async () => {
    const u = await userSession(t, 'reset');
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${u.userId}`, headers: as(admin), payload: { password: 'reset by the admin 42' } });
    expect((await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: as(u) })).statusCode).toBe(401);
    await login(t.app, 'reset', 'reset by the admin 42');
  });

  it('answers 404 for an unknown user', async () => {
    const res = await t.app.inject({
      method: 'PATCH', url: '/v1/users/00000000-0000-4000-8000-000000000000', headers: as(admin), payload: { email: 'x@example.com' },
    });
    expect(json(res)).toMatchObject({ status: 404, code: 'user_not_found' });
  });
});

describe('the last admin', () => {
  it('cannot demote or disable themself into zero admins, but can once another admin exists', async () => {
    const solo = await createTestApp();
    try {
      const a = await adminSession(solo, 'only');
      const demote = await solo.app.inject({ method: 'PATCH', url: `/v1/users/${a.userId}`, headers: a.auth, payload: { role: 'user' } });
      expect(json(demote)).toMatchObject({ status: 409, code: 'last_admin' });
      const disable = await solo.app.inject({ method: 'PATCH', url: `/v1/users/${a.userId}`, headers: a.auth, payload: { disabled: true } });
      expect(json(disable)).toMatchObject({ status: 409, code: 'last_admin' });
      expect((await solo.prisma.user.findUniqueOrThrow({ where: { id: a.userId } })).role).toBe('admin');

      await solo.app.inject({ method: 'POST', url: '/v1/users', headers: a.auth, payload: { username: 'second', password: PASSWORD, role: 'admin' } });
      const ok = await solo.app.inject({ method: 'PATCH', url: `/v1/users/${a.userId}`, headers: a.auth, payload: { role: 'user' } });
      expect(json(ok).role).toBe('user');
    } finally {
      await solo.close();
    }
  });

  it('two admins demoting each other at once leave one admin', async () => {
    const duo = await createTestApp();
    try {
      const a = await adminSession(duo, 'ann');
      const b = await adminSession(duo, 'ben');
      const results = await Promise.all([
        duo.app.inject({ method: 'PATCH', url: `/v1/users/${b.userId}`, headers: a.auth, payload: { role: 'user' } }),
        duo.app.inject({ method: 'PATCH', url: `/v1/users/${a.userId}`, headers: b.auth, payload: { role: 'user' } }),
      ]);
      expect(await duo.prisma.user.count({ where: { role: 'admin' } })).toBe(1);
      expect(results.map((r) => r.statusCode).sort()).toContain(200);
    } finally {
      await duo.close();
    }
  });
});

describe('DELETE /v1/users/{id}', () => {
  it('deletes the user and revokes their sessions at once', async () => {
    const u = await userSession(t, 'gone');
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/users/${u.userId}`, headers: as(admin) })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: as(u) })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: u.refreshToken } })).statusCode).toBe(401);
    expect(await t.prisma.session.count({ where: { userId: u.userId } })).toBe(0);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/users/${u.userId}`, headers: as(admin) })).statusCode).toBe(404);
  });

  it('refuses to delete yourself (409 cannot_delete_self)', async () => {
    const res = await t.app.inject({ method: 'DELETE', url: `/v1/users/${admin.userId}`, headers: as(admin) });
    expect(json(res)).toMatchObject({ status: 409, code: 'cannot_delete_self' });
  });
});
