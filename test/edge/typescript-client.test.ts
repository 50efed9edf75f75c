// The generated TypeScript client (@berth/client, built from clients/typescript) driving a
// real berth with a real sshd machine over HTTPS through Caddy: register, log in, refresh,
// reserve, read, extend, release, and the problems a program has to handle, typed.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { BerthProblemError, createBerthClient, unwrap, type BerthClient, type Tokens } from '@berth/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, register } from '../helpers/app.js';
import { startCaddyFor, type Caddy } from '../helpers/caddy.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';
import { sshRun } from '../helpers/ssh-machines.js';

let pool: Pool;
let caddy: Caddy;
let berth: BerthClient;
const seenTokens: (Tokens | null)[] = [];

beforeAll(async () => {
  pool = await createPool(1, { BERTH_TRUST_PROXY: '127.0.0.1' }, 'tsc');
  caddy = await startCaddyFor(pool.t.app);
});
afterAll(async () => {
  await caddy?.stop();
  await pool?.close();
});

/** A client of berth through Caddy, trusting Caddy's local root (an undici Agent for Node's fetch). */
const client = (tokens?: Tokens) =>
  createBerthClient({ baseUrl: caddy.url, tokens, requestInitExt: { dispatcher: caddy.dispatcher() }, onTokens: (t) => seenTokens.push(t) });

describe('a program using @berth/client over HTTPS', () => {
  let reservationId = '';
  let expiresAt = '';

  it('registers and logs in (JSON and HTTP Basic)', async () => {
    berth = client();
    const user = unwrap(await berth.api.POST('/v1/register', { body: { username: 'ts-user', password: PASSWORD } }));
    expect(user).toMatchObject({ username: 'ts-user', role: 'user' });
    const basic = await client().login('ts-user', PASSWORD, { basic: true });
    const tokens = await berth.login('ts-user', PASSWORD);
    expect(tokens.sessionId).not.toBe(basic.sessionId);
    expect(tokens.accessExpiresAt).toBeGreaterThan(Date.now());
    expect(unwrap(await berth.api.GET('/v1/whoami'))).toMatchObject({ username: 'ts-user', session_id: tokens.sessionId });
  });

  it('refreshes: new tokens, and the spent refresh token is refused', async () => {
    const before = berth.tokens!;
    const after = await berth.refresh();
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect(seenTokens.at(-1)).toEqual(after);
    const { error, response } = await berth.api.POST('/v1/token/refresh', { body: { refresh_token: 'brt_not-a-token-berth-issued' } });
    expect(response.status).toBe(401);
    expect(error?.code).toBe('invalid_refresh_token');
  });

  it('refreshes by itself when the access token is about to expire', async () => {
    const old = berth.tokens!;
    berth.setTokens({ ...old, accessExpiresAt: Date.now() + 5_000 }); // inside the 30 s lead
    expect(unwrap(await berth.api.GET('/v1/pool')).available).toBe(1);
    expect(berth.tokens!.refreshToken).not.toBe(old.refreshToken);
    expect(berth.tokens!.accessExpiresAt).toBeGreaterThan(Date.now() + 60_000);
  });

  it('reserves a real machine, whose account works over SSH', async () => {
    const r = unwrap(await berth.api.POST('/v1/reservations', { body: { count: 1, duration_minutes: 30 } }));
    expect(r).toMatchObject({ status: 'active', account: { username: 'ts-user' } });
    expect(r.machines).toHaveLength(1);
    reservationId = r.id;
    expiresAt = r.expires_at!;
    const [m] = r.machines;
    const login = await sshRun({ host: m!.host, port: m!.port, username: 'ts-user', password: r.account.password! }, 'id -un');
    expect(login.stdout.trim()).toBe('ts-user');
  });

  it('reads the reservation and extends it', async () => {
    const read = unwrap(await berth.api.GET('/v1/reservations/{id}', { params: { path: { id: reservationId } } }));
    expect(read).toMatchObject({ id: reservationId, status: 'active' });
    expect(read.seconds_remaining).toBeGreaterThan(0);
    const extended = unwrap(
      await berth.api.POST('/v1/reservations/{id}/extend', { params: { path: { id: reservationId } }, body: { minutes: 15 } }),
    );
    expect(Date.parse(extended.expires_at!) - Date.parse(expiresAt)).toBe(15 * 60_000);
  });

  it('gets 409 insufficient_capacity, typed, while the only machine is taken', async () => {
    const { error, response } = await berth.api.POST('/v1/reservations', { body: { count: 1 } });
    expect(response.status).toBe(409);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    if (error?.code !== 'insufficient_capacity') throw new Error(`expected insufficient_capacity, got ${JSON.stringify(error)}`);
    // `code` narrowed the problem: `available` and `requested` are numbers here.
    expect(error.available + error.requested).toBe(1);
    // The same through unwrap: a BerthProblemError that narrows with is().
    const thrown = await berth.api.POST('/v1/reservations', { body: { count: 1 } }).then(unwrap).catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(BerthProblemError);
    const problem = thrown as BerthProblemError;
    expect(problem.is('insufficient_capacity') && problem.problem.available).toBe(0);
  });

  it('releases: the account is gone from the machine', async () => {
    const released = unwrap(await berth.api.DELETE('/v1/reservations/{id}', { params: { path: { id: reservationId } } }));
    expect(released.status).toBe('released');
    expect(await accountExists(pool.machines[0]!, 'ts-user')).toBe(false);
  });

  it('gets 401 without a token and 403 on an admin operation, as typed problems', async () => {
    const anonymous = client();
    const { error: noToken, response } = await anonymous.api.GET('/v1/whoami');
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(noToken?.code).toBe('missing_token');
    const { error: notAdmin, response: forbidden } = await berth.api.GET('/v1/users');
    expect(forbidden.status).toBe(403);
    expect(notAdmin?.code).toBe('admin_required');
  });

  it('logs out: the session ends at once', async () => {
    const tokens = berth.tokens!;
    await berth.logout();
    expect(berth.tokens).toBeNull();
    const { error } = await client({ ...tokens, accessExpiresAt: Date.now() + 600_000 }).api.GET('/v1/whoami');
    expect(error?.code).toBe('session_revoked');
  });
});

describe('the example program (clients/typescript/examples/reserve.ts)', () => {
  it('reserves and releases a machine, trusting the CA through NODE_EXTRA_CA_CERTS', async () => {
    await register(pool.t.app, 'example-user');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.resolve('clients/typescript/examples/reserve.ts')], {
      env: {
        PATH: process.env.PATH ?? '',
        BERTH_URL: caddy.url,
        BERTH_USERNAME: 'example-user',
        BERTH_PASSWORD: PASSWORD,
        NODE_EXTRA_CA_CERTS: caddy.rootPath,
      },
    });
    const machine = pool.machines[0]!;
    expect(stdout).toContain(`reserved ${machine.name}: ssh -p ${machine.port} example-user@${machine.host}`);
    expect(stdout).toMatch(/reservation [0-9a-f-]{36} released/);
    expect(await accountExists(machine, 'example-user')).toBe(false);
  });
});
