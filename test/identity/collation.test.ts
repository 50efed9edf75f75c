import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, createTestApp, json, register, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ BERTH_LOGIN_MAX_PER_USERNAME: '5', BERTH_LOGIN_WINDOW_SECONDS: '60' });
  await register(t.app, 'alice');
});
afterAll(() => t.close());

describe('usernames at login', () => {
  it.each(['alicé', 'ａｌｉｃｅ', 'ali\u200bce', 'ÅLICE'])('%s is not alice (the database collation would say it is)', async (name) => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: name, password: PASSWORD } });
    expect(json(res)).toMatchObject({ status: 401, code: 'invalid_credentials' });
  });

  it('so look-alike spellings cannot each get their own throttle bucket for alice', async () => {
    for (let i = 0; i < 5; i++) await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'alice', password: `guess ${i}` } });
    const blocked = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'alice', password: PASSWORD } });
    expect(blocked.statusCode).toBe(429);
  });
});
