// Every route where an attempt costs an argon2 hash, or checks a password, is throttled
// per client address and per account, like POST /v1/token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, createTestApp, json, login, register, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    BERTH_REGISTER_MAX_PER_IP: '4',
    BERTH_REGISTER_MAX_PER_USERNAME: '2',
    BERTH_PASSWORD_CHANGE_MAX_PER_IP: '6',
    BERTH_PASSWORD_CHANGE_MAX_PER_USER: '3',
    BERTH_LOGIN_WINDOW_SECONDS: '60',
    BERTH_TRUST_PROXY: 'true', // lets the test speak from several client addresses
  });
});
afterAll(() => t.close());

const registerFrom = (ip: string, username: string) =>
  t.app.inject({ method: 'POST', url: '/v1/register', headers: { 'x-forwarded-for': ip }, payload: { username, password: PASSWORD } });

function expectThrottled(res: Awaited<ReturnType<typeof registerFrom>>) {
  expect(res.statusCode, res.body).toBe(429);
  expect(json(res)).toMatchObject({ code: 'too_many_attempts' });
  expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
}

describe('registration', () => {
  it('is limited per address: a fifth account from one address waits, others still register', async () => {
    for (let i = 0; i < 4; i++) expect((await registerFrom('10.1.0.1', `bulk${i}`)).statusCode).toBe(201);
    expectThrottled(await registerFrom('10.1.0.1', 'bulk4'));
    expect((await registerFrom('10.1.0.2', 'bulk4')).statusCode).toBe(201);
  });

  it('is limited per username across addresses', async () => {
    expect((await registerFrom('10.2.0.1', 'contested')).statusCode).toBe(201);
    expect((await registerFrom('10.2.0.2', 'contested')).statusCode).toBe(409);
    expectThrottled(await registerFrom('10.2.0.3', 'contested'));
  });
});

describe('password change', () => {
  it('is limited per account (no unthrottled oracle for the current password), and per address', async () => {
    await register(t.app, 'carol');
    const carol = await login(t.app, 'carol');
    const guess = (current: string, ip: string, auth = carol.auth) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/password/change',
        headers: { ...auth, 'x-forwarded-for': ip },
        payload: { current_password: current, new_password: 'a brand new passphrase' },
      });
    for (let i = 0; i < 3; i++) expect((await guess(`guess number ${i}`, `10.3.0.${i}`)).statusCode).toBe(403);
    // The right password is no use once the account's attempts are spent: the oracle is closed.
    expectThrottled(await guess(PASSWORD, '10.3.0.99'));

    // Per address: one address guessing for several accounts.
    const accounts = [];
    for (const name of ['dave', 'erin', 'frank']) {
      await register(t.app, name);
      accounts.push(await login(t.app, name));
    }
    const codes = [];
    for (const [i, a] of [...accounts, ...accounts].entries()) codes.push((await guess(`wrong ${i}`, '10.4.0.1', a.auth)).statusCode);
    expect(codes).toEqual([403, 403, 403, 403, 403, 403]);
    expectThrottled(await guess('wrong again', '10.4.0.1', accounts[0]!.auth));
  });
});
