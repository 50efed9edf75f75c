// Identity raises what people do with their accounts and what admins do to them, once it
// has committed, heard on the app's event stream: registrations, logins that worked or did
// not (never with the password), password changes, admin changes (field names only),
// deletions, and every session that ends with them. A change that is refused raises nothing.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { listen } from '../helpers/events.js';
import { PASSWORD, adminSession, createTestApp, json, login, register, type Session, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: Session;
let heard: ReturnType<typeof listen>;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t, 'boss');
  heard = listen(t.app.events);
});
afterAll(() => t.close());
beforeEach(() => heard.forget());
const takeHeard = () => heard.take();

const inject = (method: 'POST' | 'PATCH' | 'DELETE', url: string, session: Session | null, payload?: object) =>
  t.app.inject({ method, url, headers: session?.auth ?? {}, ...(payload && { payload }) });

describe('identity events', () => {
  it('a registration, a login, and failed logins, which never carry the password', async () => {
    const alice = await register(t.app, 'alice');
    expect(takeHeard()).toEqual([{ type: 'user.registered', userId: alice.id, username: 'alice' }]);

    const s = await login(t.app, ' Alice ');
    expect(takeHeard()).toEqual([{ type: 'user.login_succeeded', userId: alice.id, username: 'alice', sessionId: s.sessionId }]);

    const wrong = 'a wrong password of some length';
    expect((await inject('POST', '/v1/token', null, { username: 'alice', password: wrong })).statusCode).toBe(401);
    expect((await inject('POST', '/v1/token', null, { username: 'nobody', password: wrong })).statusCode).toBe(401);
    // A password typed into the username field is no username: the event does not repeat it.
    const typedInWrongField = 'Hunter2 is my passphrase';
    expect((await inject('POST', '/v1/token', null, { username: typedInWrongField, password: wrong })).statusCode).toBe(401);
    const failed = takeHeard();
    expect(failed).toEqual([
      { type: 'user.login_failed', username: 'alice', reason: 'bad_credentials' },
      { type: 'user.login_failed', username: 'nobody', reason: 'bad_credentials' },
      { type: 'user.login_failed', username: null, reason: 'bad_credentials' },
    ]);
    expect(JSON.stringify(failed)).not.toContain(wrong);
    expect(JSON.stringify(failed).toLowerCase()).not.toContain(typedInWrongField.toLowerCase());
  });

  it('logging out, revoking a session and reusing a refresh token end sessions, each once', async () => {
    const bob = await register(t.app, 'bob');
    const [one, two, three] = [await login(t.app, 'bob'), await login(t.app, 'bob'), await login(t.app, 'bob')];
    takeHeard();

    expect((await inject('POST', '/v1/logout', one)).statusCode).toBe(204);
    expect((await inject('POST', '/v1/logout', null, { refresh_token: one.refreshToken })).statusCode).toBe(204); // ended already
    expect((await inject('DELETE', `/v1/sessions/${two.sessionId}`, admin)).statusCode).toBe(204);
    const refreshed = await inject('POST', '/v1/token/refresh', null, { refresh_token: three.refreshToken });
    expect(refreshed.statusCode).toBe(200);
    expect((await inject('POST', '/v1/token/refresh', null, { refresh_token: three.refreshToken })).statusCode).toBe(401);
    expect(takeHeard()).toEqual([
      { type: 'session.revoked', userId: bob.id, sessionIds: [one.sessionId], reason: 'logout' },
      { type: 'session.revoked', userId: bob.id, sessionIds: [two.sessionId], reason: 'revoked' },
      { type: 'session.revoked', userId: bob.id, sessionIds: [three.sessionId], reason: 'refresh_token_reuse' },
    ]);
  });

  it('changing your own password ends your other sessions, named', async () => {
    const carol = await register(t.app, 'carol');
    const [current, other] = [await login(t.app, 'carol'), await login(t.app, 'carol')];
    takeHeard();
    const newPassword = 'another long passphrase 2026';
    const changed = await inject('POST', '/v1/password/change', current, { current_password: PASSWORD, new_password: newPassword, kill_sessions: true });
    expect(json(changed)).toEqual({ changed: true, sessions_revoked: 1 });
    const got = takeHeard();
    expect(got).toEqual([
      { type: 'user.password_changed', userId: carol.id, by: 'self' },
      { type: 'session.revoked', userId: carol.id, sessionIds: [other.sessionId], reason: 'password_change' },
    ]);
    expect(JSON.stringify(got)).not.toContain(newPassword);

    // Refused (the current password is wrong): nothing.
    await inject('POST', '/v1/password/change', current, { current_password: PASSWORD, new_password: 'yet another passphrase 2027' });
    expect(takeHeard()).toEqual([]);
  });

  it("an admin's changes: made, fields changed (names only), disabled, reset, deleted; a refused one raises nothing", async () => {
    const made = json(await inject('POST', '/v1/users', admin, { username: 'dave', password: PASSWORD, role: 'user' }));
    expect(takeHeard()).toEqual([{ type: 'user.created', userId: made.id, username: 'dave', role: 'user' }]);
    await login(t.app, 'dave');
    takeHeard();

    await inject('PATCH', `/v1/users/${made.id}`, admin, { email: 'dave@example.com', role: 'admin' });
    await inject('PATCH', `/v1/users/${made.id}`, admin, { email: 'dave@example.com' }); // as it was
    expect(takeHeard()).toEqual([{ type: 'user.updated', userId: made.id, fields: ['email', 'role'] }]);

    await inject('PATCH', `/v1/users/${made.id}`, admin, { disabled: true });
    expect(takeHeard()).toEqual([
      { type: 'user.updated', userId: made.id, fields: ['disabled'] },
      { type: 'session.revoked', userId: made.id, sessionIds: 'all', reason: 'user_disabled' },
    ]);
    expect((await inject('POST', '/v1/token', null, { username: 'dave', password: PASSWORD })).statusCode).toBe(403);
    expect(takeHeard()).toEqual([{ type: 'user.login_failed', username: 'dave', reason: 'disabled' }]);

    await inject('PATCH', `/v1/users/${made.id}`, admin, { disabled: false });
    await login(t.app, 'dave');
    takeHeard();
    const reset = 'an admin chose this passphrase';
    await inject('PATCH', `/v1/users/${made.id}`, admin, { password: reset });
    const got = takeHeard();
    expect(got).toEqual([
      { type: 'user.password_changed', userId: made.id, by: 'admin' },
      { type: 'session.revoked', userId: made.id, sessionIds: 'all', reason: 'password_reset' },
    ]);
    expect(JSON.stringify(got)).not.toContain(reset);

    // The last enabled admin but dave cannot go: refused, nothing raised.
    await inject('PATCH', `/v1/users/${made.id}`, admin, { role: 'user' });
    takeHeard();
    const boss = json(await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: admin.auth }));
    expect(json(await inject('PATCH', `/v1/users/${boss.id}`, admin, { role: 'user' })).code).toBe('last_admin');
    expect(takeHeard()).toEqual([]);

    await login(t.app, 'dave', reset);
    takeHeard();
    expect((await inject('DELETE', `/v1/users/${made.id}`, admin)).statusCode).toBe(204);
    expect(takeHeard()).toEqual([
      { type: 'session.revoked', userId: made.id, sessionIds: 'all', reason: 'user_deleted' },
      { type: 'user.deleted', userId: made.id },
    ]);
  });
});
