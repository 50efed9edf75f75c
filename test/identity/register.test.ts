import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, createTestApp, json, login, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const registerRaw = (payload: unknown) => t.app.inject({ method: 'POST', url: '/v1/register', payload: payload as object });

describe('POST /v1/register', () => {
  it('creates a user with role user and never returns the hash', async () => {
    const res = await registerRaw({ username: 'alice', password: PASSWORD, email: 'alice@example.com' });
    expect(res.statusCode).toBe(201);
    const body = json(res);
    expect(body).toMatchObject({ username: 'alice', email: 'alice@example.com', role: 'user', disabled: false });
    expect(Object.keys(body).sort()).toEqual(['created_at', 'disabled', 'email', 'id', 'role', 'updated_at', 'username']);
    expect(res.body).not.toContain('argon2');
  });

  it('stores an argon2id hash with at least OWASP parameters (m=19456, t=2, p=1)', async () => {
    const row = await t.prisma.user.findUniqueOrThrow({ where: { username: 'alice' } });
    expect(row.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
  });

  it('answers 409 username_taken for a taken username', async () => {
    const res = await registerRaw({ username: 'alice', password: 'some other passphrase' });
    expect(res.statusCode).toBe(409);
    expect(json(res)).toMatchObject({ code: 'username_taken', status: 409 });
  });

  it.each([
    ['a password of 7 characters', { username: 'bob', password: 'seven77' }, '/password'],
    ['a password of 257 characters', { username: 'bob', password: 'x'.repeat(257) }, '/password'],
    ['one of the most common passwords', { username: 'bob', password: 'iloveyou1' }, '/password'],
    ['the username as password', { username: 'bobbybobby', password: 'bobbybobby' }, '/password'],
    ['an uppercase username', { username: 'Bob', password: PASSWORD }, '/username'],
    ['a username with a space', { username: 'bo b', password: PASSWORD }, '/username'],
    ['a username of 33 characters', { username: 'b'.repeat(33), password: PASSWORD }, '/username'],
    ['a malformed email', { username: 'bob', password: PASSWORD, email: 'not-an-email' }, '/email'],
    ['a missing password', { username: 'bob' }, '/password'],
  ])('rejects %s with a 400 pointing at the field', async (_name, payload, pointer) => {
    const res = await registerRaw(payload);
    expect(res.statusCode).toBe(400);
    const body = json(res);
    expect(body.code).toBe('validation_failed');
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(body.errors.map((e: { pointer: string }) => e.pointer)).toContain(pointer);
    expect(await t.prisma.user.count({ where: { username: (payload as { username: string }).username } })).toBe(0);
  });

  it('accepts 8 and 256 characters, counted as characters not bytes, with no composition rules', async () => {
    expect((await registerRaw({ username: 'eight', password: 'qzvxwkjp' })).statusCode).toBe(201);
    expect((await registerRaw({ username: 'long', password: 'é'.repeat(256) })).statusCode).toBe(201);
    expect((await registerRaw({ username: 'emoji', password: '🔑🔑🔑🔑🔑🔑🔑🔑' })).statusCode).toBe(201);
  });
});

describe('closed registration', () => {
  it('answers 403 registration_closed and creates nothing', async () => {
    const closed = await createTestApp({ BERTH_REGISTRATION: 'closed' });
    try {
      const res = await closed.app.inject({ method: 'POST', url: '/v1/register', payload: { username: 'mallory', password: PASSWORD } });
      expect(res.statusCode).toBe(403);
      expect(json(res).code).toBe('registration_closed');
      expect(await closed.prisma.user.count()).toBe(0);
    } finally {
      await closed.close();
    }
  });
});

describe('rehash on login', () => {
  it('upgrades a hash made with weaker parameters the next time the user logs in', async () => {
    const stronger = await createTestApp({ BERTH_ARGON2_MEMORY_KIB: '24576', BERTH_ARGON2_TIME_COST: '3' });
    try {
      // A hash at the old (OWASP minimum) parameters, as an older berth would have stored.
      const argon2 = (await import('argon2')).default;
      const oldHash = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 });
      await stronger.prisma.user.create({ data: { username: 'olduser', passwordHash: oldHash } });
      await login(stronger.app, 'olduser');
      const row = await stronger.prisma.user.findUniqueOrThrow({ where: { username: 'olduser' } });
      expect(row.passwordHash).toMatch(/^\$argon2id\$v=19\$m=24576,p=1,t=3\$/);
      // And the upgraded hash still logs in.
      await login(stronger.app, 'olduser');
    } finally {
      await stronger.close();
    }
  });
});
