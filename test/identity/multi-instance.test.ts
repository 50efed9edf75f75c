// Several berth processes on one database: a session ended through one instance is
// refused by the others within BERTH_SESSION_CACHE_MS (and at once with the cache off).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, login, register, type TestApp } from '../helpers/app.js';

let a: TestApp;
let b: TestApp;
let uncached: TestApp;
beforeAll(async () => {
  a = await createTestApp({ BERTH_SESSION_CACHE_MS: '500' });
  b = await createTestApp({ BERTH_SESSION_CACHE_MS: '500' }, { shareWith: a });
  uncached = await createTestApp({ BERTH_SESSION_CACHE_MS: '0' }, { shareWith: a });
  await register(a.app, 'alice');
});
afterAll(async () => {
  await uncached.close();
  await b.close();
  await a.close();
});

const whoami = (t: TestApp, authorization: string) => t.app.inject({ method: 'GET', url: '/v1/whoami', headers: { authorization } });

describe('two instances on one database', () => {
  it('accept each other’s tokens (shared keys and sessions)', async () => {
    const s = await login(a.app, 'alice');
    expect((await whoami(b, s.auth.authorization)).statusCode).toBe(200);
    const refreshed = await b.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: s.refreshToken } });
    expect(refreshed.statusCode).toBe(200);
  });

  it('a logout on one is honoured by the other within the cache window, and at once without a cache', async () => {
    const s = await login(a.app, 'alice');
    // B and the uncached instance have both seen the session alive (B has it cached now).
    expect((await whoami(b, s.auth.authorization)).statusCode).toBe(200);
    expect((await whoami(uncached, s.auth.authorization)).statusCode).toBe(200);

    expect((await a.app.inject({ method: 'POST', url: '/v1/logout', headers: s.auth })).statusCode).toBe(204);
    expect((await whoami(a, s.auth.authorization)).statusCode).toBe(401); // the revoking instance: at once
    expect((await whoami(uncached, s.auth.authorization)).statusCode).toBe(401); // no cache: at once

    // B may still answer from its cache, but never past BERTH_SESSION_CACHE_MS.
    await new Promise((r) => setTimeout(r, 550));
    expect((await whoami(b, s.auth.authorization)).statusCode).toBe(401);
  });

  it('keeps answering from the cache while re-checking in the background, and sees a revocation through it', async () => {
    const s = await login(a.app, 'alice');
    expect((await whoami(b, s.auth.authorization)).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 300)); // past half the window: the next request re-checks in the background
    await a.prisma.session.update({ where: { id: s.sessionId }, data: { revokedAt: new Date(), revokedReason: 'revoked' } });
    expect((await whoami(b, s.auth.authorization)).statusCode).toBe(200); // served from the cache, re-check started
    await new Promise((r) => setTimeout(r, 100));
    expect((await whoami(b, s.auth.authorization)).statusCode).toBe(401); // the re-check saw the revocation
  });
});
