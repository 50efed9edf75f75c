// Login throttling: per client address and per username, 429 with Retry-After, and a
// window short enough that an attacker cannot keep a real user out for long.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, createTestApp, json, register, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    BERTH_LOGIN_MAX_PER_IP: '8',
    BERTH_LOGIN_MAX_PER_USERNAME: '3',
    BERTH_LOGIN_WINDOW_SECONDS: '2',
    BERTH_TRUST_PROXY: 'true', // lets the test speak from several client addresses
  });
  await register(t.app, 'alice');
  await register(t.app, 'bob');
});
afterAll(() => t.close());

const attempt = (username: string, password: string, ip: string) =>
  t.app.inject({ method: 'POST', url: '/v1/token', payload: { username, password }, headers: { 'x-forwarded-for': ip } });

describe('login throttling', () => {
  it('limits attempts on one username from many addresses, then lets the user in once the window passes', async () => {
    for (let i = 0; i < 3; i++) expect((await attempt('alice', 'guess-number-' + i, `10.9.0.${i}`)).statusCode).toBe(401);
    const blocked = await attempt('alice', PASSWORD, '10.9.0.200');
    expect(blocked.statusCode).toBe(429);
    expect(json(blocked)).toMatchObject({ code: 'too_many_attempts', status: 429 });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(2);
    // Another username is not affected.
    expect((await attempt('bob', PASSWORD, '10.9.0.201')).statusCode).toBe(200);
    // The lock-out lasts only the window.
    await new Promise((r) => setTimeout(r, Number(blocked.headers['retry-after']) * 1000 + 200));
    expect((await attempt('alice', PASSWORD, '10.9.0.202')).statusCode).toBe(200);
  });

  it('limits one address across many usernames', async () => {
    await new Promise((r) => setTimeout(r, 2100));
    const codes: number[] = [];
    for (let i = 0; i < 9; i++) codes.push((await attempt(`user${i}`, 'whatever-password', '10.8.0.1')).statusCode);
    expect(codes.slice(0, 8).every((c) => c === 401)).toBe(true);
    expect(codes[8]).toBe(429);
    // Other addresses still get through.
    expect((await attempt('bob', PASSWORD, '10.8.0.2')).statusCode).toBe(200);
  });

  it('applies the username limit to HTTP Basic attempts too', async () => {
    await new Promise((r) => setTimeout(r, 2100));
    const basic = (pw: string, ip: string) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/token',
        headers: { authorization: `Basic ${Buffer.from(`bob:${pw}`).toString('base64')}`, 'x-forwarded-for': ip },
      });
    for (let i = 0; i < 3; i++) await basic('wrong-' + i, `10.7.0.${i}`);
    expect((await basic(PASSWORD, '10.7.0.99')).statusCode).toBe(429);
  });
});
