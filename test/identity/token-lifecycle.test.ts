// The token lifecycle end to end, against the real database: login, rotation, reuse
// detection, logout revocation, kill_sessions, expiry and key rotation.
import { generateKeyPairSync, createHmac } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPasswordHasher } from '../../src/modules/identity/passwords.js';
import { PASSWORD, createTestApp, json, login, register, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
  await register(t.app, 'alice', PASSWORD, 'alice@example.com');
});
afterAll(() => t.close());

const whoami = (authorization: string) => t.app.inject({ method: 'GET', url: '/v1/whoami', headers: { authorization } });
const refresh = (refresh_token: string) => t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token } });
const verify = (token: string) => t.app.inject({ method: 'POST', url: '/v1/token/verify', headers: { authorization: `Bearer ${token}` } });
const decodeHeader = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString());
const decodePayload = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());

describe('POST /v1/token', () => {
  it('issues an EdDSA access token with kid, typ, iss, aud, sid and a 15-minute lifetime', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'alice', password: PASSWORD } });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 900, refresh_expires_in: 14 * 24 * 3600 });
    const header = decodeHeader(body.access_token);
    expect(header).toEqual({ alg: 'EdDSA', typ: 'at+jwt', kid: t.keyring.signingKey.kid });
    const claims = decodePayload(body.access_token);
    expect(claims).toMatchObject({ iss: 'berth', aud: 'berth', sid: body.session_id, username: 'alice', role: 'user' });
    expect(claims.exp - claims.iat).toBe(900);
    // Opaque refresh token: prefix + 43 base64url characters = 256 bits.
    expect(body.refresh_token).toMatch(/^brt_[A-Za-z0-9_-]{43}$/);
  });

  it('accepts HTTP Basic credentials', async () => {
    const basic = Buffer.from(`alice:${PASSWORD}`).toString('base64');
    const res = await t.app.inject({ method: 'POST', url: '/v1/token', headers: { authorization: `Basic ${basic}` } });
    expect(res.statusCode).toBe(200);
    expect(json(res).access_token).toBeTruthy();
  });

  it('stores only a SHA-256 of the refresh token', async () => {
    const s = await login(t.app, 'alice');
    const rows = await t.prisma.refreshToken.findMany({ where: { sessionId: s.sessionId } });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.tokenHash).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]!.tokenHash).not.toContain(s.refreshToken.slice(4));
  });

  it('answers the same 401 for an unknown user and a wrong password', async () => {
    const unknown = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'nobody', password: PASSWORD } });
    const wrong = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'alice', password: 'not the password' } });
    expect(unknown.statusCode).toBe(401);
    expect(wrong.statusCode).toBe(401);
    const strip = (b: Record<string, unknown>) => ({ ...b, instance: undefined });
    expect(strip(json(unknown))).toEqual(strip(json(wrong)));
    expect(json(wrong).code).toBe('invalid_credentials');
    expect(unknown.headers['content-type']).toContain('application/problem+json');
  });

  it('spends comparable time on an unknown user and a wrong password (a dummy hash is verified)', async () => {
    const attempt = async (username: string) => {
      const start = process.hrtime.bigint();
      await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username, password: 'wrong password here' } });
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    // Interleaved, each round in the other order, so a change of the machine's load (other
    // test files, other processes) weighs on both series alike; then medians, so that a
    // few stalls do not decide. Both paths run the same code: one indexed lookup, then one
    // argon2 verify with the same parameters (the dummy hash is made with ours).
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let round = 0; round < 11; round++) {
      if (round % 2 === 0) {
        unknown.push(await attempt('nobody-at-all'));
        wrong.push(await attempt('alice'));
      } else {
        wrong.push(await attempt('alice'));
        unknown.push(await attempt('nobody-at-all'));
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const ratio = median(unknown) / median(wrong);
    // Without the dummy verify an unknown user answers in ~1 ms against tens of ms for argon2.
    expect(ratio, `unknown ${unknown.map(Math.round)} vs wrong ${wrong.map(Math.round)} ms`).toBeGreaterThan(0.5);
    expect(ratio, `unknown ${unknown.map(Math.round)} vs wrong ${wrong.map(Math.round)} ms`).toBeLessThan(2);
  });

  it('rejects malformed HTTP Basic credentials with a 400 problem', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/token', headers: { authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` } });
    expect(json(res)).toMatchObject({ status: 400, code: 'malformed_credentials' });
  });

  it('rejects a request without credentials with a 400 problem', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/token' });
    expect(res.statusCode).toBe(400);
    expect(json(res).code).toBe('missing_credentials');
  });
});

describe('refresh rotation', () => {
  it('returns new tokens and spends the old refresh token', async () => {
    const s = await login(t.app, 'alice');
    const first = await refresh(s.refreshToken);
    expect(first.statusCode).toBe(200);
    const next = json(first);
    expect(next.refresh_token).not.toBe(s.refreshToken);
    expect(next.session_id).toBe(s.sessionId);
    expect((await whoami(`Bearer ${next.access_token}`)).statusCode).toBe(200);
    // The successor works once more.
    expect((await refresh(next.refresh_token)).statusCode).toBe(200);
  });

  it('accepts the refresh token as a Bearer header', async () => {
    const s = await login(t.app, 'alice');
    const res = await t.app.inject({ method: 'POST', url: '/v1/token/refresh', headers: { authorization: `Bearer ${s.refreshToken}` } });
    expect(res.statusCode).toBe(200);
  });

  it('revokes the whole session when a spent refresh token is presented again', async () => {
    const s = await login(t.app, 'alice');
    const rotated = json(await refresh(s.refreshToken));
    const replay = await refresh(s.refreshToken);
    expect(replay.statusCode).toBe(401);
    expect(json(replay).code).toBe('refresh_token_reused');
    // Both the legitimate successor and every access token of the session are dead now.
    expect(json(await refresh(rotated.refresh_token)).code).toBe('invalid_refresh_token');
    expect((await whoami(`Bearer ${rotated.access_token}`)).statusCode).toBe(401);
    expect((await whoami(s.auth.authorization)).statusCode).toBe(401);
    const session = await t.prisma.session.findUniqueOrThrow({ where: { id: s.sessionId } });
    expect(session.revokedReason).toBe('refresh_token_reuse');
  });

  it('lets exactly one of two concurrent refreshes with the same token win', async () => {
    const s = await login(t.app, 'alice');
    const results = await Promise.all([refresh(s.refreshToken), refresh(s.refreshToken)]);
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes).toEqual([200, 401]);
  });

  it('refuses an unknown, expired (idle) or session-expired refresh token', async () => {
    expect(json(await refresh('brt_not-a-real-token')).code).toBe('invalid_refresh_token');

    const idle = await login(t.app, 'alice');
    await t.prisma.refreshToken.updateMany({ where: { sessionId: idle.sessionId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect(json(await refresh(idle.refreshToken)).code).toBe('invalid_refresh_token');

    const old = await login(t.app, 'alice');
    await t.prisma.session.update({ where: { id: old.sessionId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect(json(await refresh(old.refreshToken)).code).toBe('invalid_refresh_token');
  });

  it('never issues an access token that outlives its session', async () => {
    const s = await login(t.app, 'alice');
    const end = new Date(Date.now() + 60_000);
    await t.prisma.session.update({ where: { id: s.sessionId }, data: { expiresAt: end } });
    const body = json(await refresh(s.refreshToken));
    expect(body.expires_in).toBeLessThanOrEqual(60);
    expect(decodePayload(body.access_token).exp).toBeLessThanOrEqual(Math.floor(end.getTime() / 1000));
  });
});

describe('logout', () => {
  it('with the access token: its access tokens fail at once and its refresh token is dead', async () => {
    const s = await login(t.app, 'alice');
    expect((await whoami(s.auth.authorization)).statusCode).toBe(200);
    const out = await t.app.inject({ method: 'POST', url: '/v1/logout', headers: s.auth });
    expect(out.statusCode).toBe(204);
    const after = await whoami(s.auth.authorization);
    expect(after.statusCode).toBe(401);
    expect(json(after).code).toBe('session_revoked');
    expect(after.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((await refresh(s.refreshToken)).statusCode).toBe(401);
  });

  it('with a refresh token in the body', async () => {
    const s = await login(t.app, 'alice');
    const out = await t.app.inject({ method: 'POST', url: '/v1/logout', payload: { refresh_token: s.refreshToken } });
    expect(out.statusCode).toBe(204);
    expect((await whoami(s.auth.authorization)).statusCode).toBe(401);
  });

  it('leaves the user’s other sessions alone', async () => {
    const a = await login(t.app, 'alice');
    const b = await login(t.app, 'alice');
    await t.app.inject({ method: 'POST', url: '/v1/logout', headers: a.auth });
    expect((await whoami(b.auth.authorization)).statusCode).toBe(200);
  });

  it('answers 401 without any token and for an unknown refresh token', async () => {
    expect((await t.app.inject({ method: 'POST', url: '/v1/logout' })).statusCode).toBe(401);
    const res = await t.app.inject({ method: 'POST', url: '/v1/logout', payload: { refresh_token: 'brt_unknown' } });
    expect(res.statusCode).toBe(401);
    expect(json(res).code).toBe('invalid_refresh_token');
  });
});

describe('POST /v1/token/verify', () => {
  it('describes a live token', async () => {
    const s = await login(t.app, 'alice');
    const res = await verify(s.accessToken);
    expect(res.statusCode).toBe(200);
    const claims = decodePayload(s.accessToken);
    expect(json(res)).toEqual({
      active: true,
      sub: s.userId,
      username: 'alice',
      role: 'user',
      session_id: s.sessionId,
      iat: claims.iat,
      exp: claims.exp,
    });
  });

  it('answers 401 with active:false for revoked, expired, forged and foreign tokens', async () => {
    const s = await login(t.app, 'alice');
    await t.app.inject({ method: 'POST', url: '/v1/logout', headers: s.auth });
    const revoked = await verify(s.accessToken);
    expect(revoked.statusCode).toBe(401);
    expect(json(revoked).active).toBe(false);

    const live = await login(t.app, 'alice');
    const claims = decodePayload(live.accessToken);
    const { kid, privatePem } = t.keyring.signingKey;
    const sign = (opts: Record<string, unknown>, payload: Record<string, unknown> = {}) =>
      createSigner({ key: privatePem, algorithm: 'EdDSA', kid, header: { alg: 'EdDSA', typ: 'at+jwt' }, ...opts } as never)({
        sub: claims.sub,
        sid: claims.sid,
        username: 'alice',
        role: 'admin',
        iss: 'berth',
        aud: 'berth',
        exp: claims.exp,
        ...payload,
      } as never) as unknown as string;

    const expired = sign({}, { iat: claims.iat - 3600, exp: claims.iat - 1800 });
    expect(json(await verify(expired))).toMatchObject({ status: 401, code: 'token_expired', active: false });
    expect(json(await verify(sign({}, { iss: 'someone-else' })))).toMatchObject({ status: 401, active: false });
    expect(json(await verify(sign({}, { aud: 'another-service' })))).toMatchObject({ status: 401, active: false });
    expect(json(await verify(sign({ header: { alg: 'EdDSA', typ: 'JWT' } })))).toMatchObject({ status: 401, active: false });
    // Our own key but a token without sid.
    expect(json(await verify(sign({}, { sid: undefined })))).toMatchObject({ status: 401, active: false });
    // A control: the same signer with good claims passes, so the rejections above are about the claims.
    expect((await verify(sign({}))).statusCode).toBe(200);

    // Signed by a key berth does not know, under our kid.
    const stranger = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const forged = createSigner({ key: stranger, algorithm: 'EdDSA', kid, header: { alg: 'EdDSA', typ: 'at+jwt' } } as never)({
      sub: claims.sub, sid: claims.sid, iss: 'berth', aud: 'berth', exp: claims.exp,
    } as never) as unknown as string;
    expect((await verify(forged)).statusCode).toBe(401);

    // Algorithm confusion: HS256 "signed" with our public key as the HMAC secret.
    const head = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ ...claims })).toString('base64url');
    const mac = createHmac('sha256', t.keyring.publicKeyPem(kid)!).update(`${head}.${body}`).digest('base64url');
    expect((await verify(`${head}.${body}.${mac}`)).statusCode).toBe(401);
    // alg none.
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid })).toString('base64url');
    expect((await verify(`${none}.${body}.`)).statusCode).toBe(401);
    // A refresh token is not an access token.
    expect(json(await verify(live.refreshToken))).toMatchObject({ status: 401, code: 'invalid_token' });
  });

  it('takes the role from the database, not from the token', async () => {
    // Tokens are minted straight from /v1/token and not used before the role changes, so no
    // remembered session check can answer with the old role.
    const mint = async (username: string) =>
      json(await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username, password: PASSWORD } })).access_token as string;
    const listUsers = (token: string) => t.app.inject({ method: 'GET', url: '/v1/users', headers: { authorization: `Bearer ${token}` } });
    const hasher = await createPasswordHasher(t.config.argon2);
    const setRole = (username: string, role: 'user' | 'admin') => t.prisma.user.update({ where: { username }, data: { role } });

    // Minted while an admin, demoted since: the token says admin and acts as a user.
    await t.prisma.user.create({ data: { username: 'demoted', role: 'admin', passwordHash: await hasher.hash(PASSWORD) } });
    const demotedToken = await mint('demoted');
    expect(decodePayload(demotedToken).role).toBe('admin');
    await setRole('demoted', 'user');
    expect(json(await verify(demotedToken)).role).toBe('user');
    expect(json(await listUsers(demotedToken))).toMatchObject({ status: 403, code: 'admin_required' });

    // And the other way: minted as a user, promoted since: the token acts as an admin.
    await register(t.app, 'promoted');
    const promotedToken = await mint('promoted');
    expect(decodePayload(promotedToken).role).toBe('user');
    await setRole('promoted', 'admin');
    expect(json(await verify(promotedToken)).role).toBe('admin');
    expect((await listUsers(promotedToken)).statusCode).toBe(200);
  });
});

describe('password change with kill_sessions', () => {
  it('revokes every other session and keeps the current one', async () => {
    await register(t.app, 'carol');
    const current = await login(t.app, 'carol');
    const other1 = await login(t.app, 'carol');
    const other2 = await login(t.app, 'carol');
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/password/change',
      headers: current.auth,
      payload: { current_password: PASSWORD, new_password: 'an entirely new passphrase', kill_sessions: true },
    });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({ changed: true, sessions_revoked: 2 });
    expect((await whoami(current.auth.authorization)).statusCode).toBe(200);
    expect((await whoami(other1.auth.authorization)).statusCode).toBe(401);
    expect((await refresh(other2.refreshToken)).statusCode).toBe(401);
    // The new password works, the old one no longer does.
    expect((await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'carol', password: PASSWORD } })).statusCode).toBe(401);
    await login(t.app, 'carol', 'an entirely new passphrase');
  });

  it('without kill_sessions leaves other sessions alive', async () => {
    await register(t.app, 'dave');
    const current = await login(t.app, 'dave');
    const other = await login(t.app, 'dave');
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/password/change',
      headers: current.auth,
      payload: { current_password: PASSWORD, new_password: 'another fine passphrase' },
    });
    expect(json(res)).toEqual({ changed: true, sessions_revoked: 0 });
    expect((await whoami(other.auth.authorization)).statusCode).toBe(200);
  });

  it('refuses a wrong current password (403) and a weak new one (400), changing nothing', async () => {
    await register(t.app, 'erin');
    const s = await login(t.app, 'erin');
    const wrong = await t.app.inject({
      method: 'POST', url: '/v1/password/change', headers: s.auth,
      payload: { current_password: 'not my password', new_password: 'another fine passphrase' },
    });
    expect(wrong.statusCode).toBe(403);
    expect(json(wrong).code).toBe('invalid_current_password');
    const weak = await t.app.inject({
      method: 'POST', url: '/v1/password/change', headers: s.auth,
      payload: { current_password: PASSWORD, new_password: 'password1' },
    });
    expect(weak.statusCode).toBe(400);
    expect(json(weak).errors).toEqual([{ pointer: '/new_password', message: expect.stringContaining('most commonly used') }]);
    const short = await t.app.inject({
      method: 'POST', url: '/v1/password/change', headers: s.auth,
      payload: { current_password: PASSWORD, new_password: 'short' },
    });
    expect(short.statusCode).toBe(400);
    expect(json(short).errors[0].pointer).toBe('/new_password');
    await login(t.app, 'erin'); // the old password still works
  });
});

describe('signing key rotation', () => {
  it('signs new tokens with the new kid, keeps verifying the old, and publishes both in the JWKS', async () => {
    const before = await login(t.app, 'alice');
    const oldKid = decodeHeader(before.accessToken).kid;
    const { kid: newKid } = t.keyring.rotate(t.config.jwt.accessTtlSeconds);
    expect(newKid).not.toBe(oldKid);

    const after = await login(t.app, 'alice');
    expect(decodeHeader(after.accessToken).kid).toBe(newKid);
    expect((await whoami(before.auth.authorization)).statusCode).toBe(200);
    expect((await whoami(after.auth.authorization)).statusCode).toBe(200);

    const jwks = json(await t.app.inject({ method: 'GET', url: '/.well-known/jwks.json' }));
    const kids = jwks.keys.map((k: { kid: string }) => k.kid);
    expect(kids).toEqual(expect.arrayContaining([oldKid, newKid]));
    for (const k of jwks.keys) {
      expect(k).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
      expect(k).not.toHaveProperty('d'); // never the private part
    }
  });

  it('prunes retired keys once no token they signed can be valid; their tokens stop verifying', async () => {
    const old = await login(t.app, 'alice');
    // Rotating with a lifetime of zero makes every retired key prunable: only the newest survives.
    t.keyring.rotate(0);
    expect(t.keyring.jwks().keys).toHaveLength(1);
    expect((await whoami(old.auth.authorization)).statusCode).toBe(401);
    const fresh = await login(t.app, 'alice');
    expect((await whoami(fresh.auth.authorization)).statusCode).toBe(200);
  });

  it('keeps a retired key while its successor is younger than the token lifetime', async () => {
    const old = await login(t.app, 'alice');
    t.keyring.rotate(t.config.jwt.accessTtlSeconds);
    t.keyring.rotate(t.config.jwt.accessTtlSeconds);
    expect(t.keyring.jwks().keys).toHaveLength(3);
    expect((await whoami(old.auth.authorization)).statusCode).toBe(200);
  });
});
