// Every input is bounded in the schemas, and past the bound the answer is a clear 400 (or
// 413 for the body itself) before any work: 20,000 reservation tags once kept MariaDB busy
// for minutes, each tag a condition of the allocation query.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: Session;
let user: Session;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t);
  user = await userSession(t, 'alice');
});
afterAll(() => t.close());

const manyTags = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));

describe('bounds', () => {
  it('refuses a reservation asking for more tags than a machine may carry', async () => {
    for (const n of [33, 20_000, 60_000]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/reservations', headers: user.auth, payload: { count: 1, tags: manyTags(n) } });
      expect(res.statusCode, `${n} tags`).toBe(400);
      expect(json(res)).toMatchObject({ code: 'validation_failed', errors: [{ pointer: '/tags' }] });
    }
    // Past the body limit, the body itself is refused.
    const huge = await t.app.inject({ method: 'POST', url: '/v1/reservations', headers: user.auth, payload: { count: 1, tags: manyTags(100_000) } });
    expect(huge.statusCode).toBe(413);
    expect(json(huge)).toMatchObject({ code: 'payload_too_large' });
  });

  it('refuses too many tags on a machine and too many tag filters in a list', async () => {
    const machine = await t.app.inject({
      method: 'POST',
      url: '/v1/machines',
      headers: admin.auth,
      payload: { name: 'tagged', host: '127.0.0.1', username: 'root', password: 'unused', tags: manyTags(33) },
    });
    expect(machine.statusCode).toBe(400);
    const filters = Array.from({ length: 17 }, (_, i) => `tag=k${i}:v`).join('&');
    const list = await t.app.inject({ method: 'GET', url: `/v1/machines?${filters}`, headers: user.auth });
    expect(list.statusCode).toBe(400);
    expect((await t.app.inject({ method: 'GET', url: `/v1/machines?${filters.split('&').slice(0, 16).join('&')}`, headers: user.auth })).statusCode).toBe(200);
  });

  it('refuses numbers past any sensible value', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/reservations', headers: user.auth, payload: { count: 1, duration_minutes: 1e12 } });
    expect(res.statusCode).toBe(400);
  });
});
