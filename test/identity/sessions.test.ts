import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, json, login, userSession, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('GET /v1/sessions', () => {
  it("lists the caller's live sessions, newest first, marking the current one", async () => {
    const first = await userSession(t, 'alice');
    const second = await login(t.app, 'alice');
    const ended = await login(t.app, 'alice');
    await t.app.inject({ method: 'POST', url: '/v1/logout', headers: ended.auth });
    await userSession(t, 'bob'); // someone else's session must not show up

    const res = await t.app.inject({ method: 'GET', url: '/v1/sessions', headers: second.auth });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    expect(body.items.map((s: { id: string }) => s.id)).toEqual([second.sessionId, first.sessionId]);
    expect(body.items.map((s: { current: boolean }) => s.current)).toEqual([true, false]);
    expect(body.items[0]).toMatchObject({ ip_address: '127.0.0.1', user_agent: 'lightMyRequest' });
    expect(body.next_cursor).toBeNull();
  });

  it('pages with limit and next_cursor', async () => {
    await userSession(t, 'carol');
    for (let i = 0; i < 4; i++) await login(t.app, 'carol');
    const s = await login(t.app, 'carol'); // 6 sessions in all
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/sessions?limit=4${cursor ? `&cursor=${cursor}` : ''}`;
      const body = json(await t.app.inject({ method: 'GET', url, headers: s.auth }));
      seen.push(...body.items.map((x: { id: string }) => x.id));
      cursor = body.next_cursor;
    } while (cursor);
    expect(seen).toHaveLength(6);
    expect(new Set(seen).size).toBe(6);
  });

  it('rejects a bad limit or a forged cursor with 400', async () => {
    const s = await login(t.app, 'alice');
    expect((await t.app.inject({ method: 'GET', url: '/v1/sessions?limit=201', headers: s.auth })).statusCode).toBe(400);
    const forged = await t.app.inject({ method: 'GET', url: '/v1/sessions?cursor=bm9wZQ', headers: s.auth });
    expect(forged.statusCode).toBe(400);
    expect(json(forged).code).toBe('invalid_cursor');
  });
});

describe('DELETE /v1/sessions/{id}', () => {
  it('revokes an own session: its tokens stop working', async () => {
    const a = await login(t.app, 'alice');
    const b = await login(t.app, 'alice');
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/sessions/${b.sessionId}`, headers: a.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: b.auth })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: b.refreshToken } })).statusCode).toBe(401);
  });

  it("answers 404 for another user's session and leaves it alive; an admin may revoke it", async () => {
    const alice = await login(t.app, 'alice');
    const bob = await login(t.app, 'bob');
    const res = await t.app.inject({ method: 'DELETE', url: `/v1/sessions/${alice.sessionId}`, headers: bob.auth });
    expect(res.statusCode).toBe(404);
    expect(json(res).code).toBe('session_not_found');
    expect((await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: alice.auth })).statusCode).toBe(200);

    const admin = await adminSession(t);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/sessions/${alice.sessionId}`, headers: admin.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: alice.auth })).statusCode).toBe(401);
  });

  it('answers 404 for an unknown session and 400 for a malformed id', async () => {
    const a = await login(t.app, 'alice');
    const unknown = await t.app.inject({ method: 'DELETE', url: '/v1/sessions/00000000-0000-4000-8000-000000000000', headers: a.auth });
    expect(unknown.statusCode).toBe(404);
    const bad = await t.app.inject({ method: 'DELETE', url: '/v1/sessions/not-a-uuid', headers: a.auth });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).errors[0].pointer).toBe('/params/id');
  });
});
