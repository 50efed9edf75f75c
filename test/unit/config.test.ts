import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      env: 'development',
      port: 8080,
      host: '127.0.0.1',
      databaseUrl: undefined,
      dataDir: path.resolve('.data'),
      registration: 'open',
      admin: { username: 'admin', password: undefined },
      jwt: { issuer: 'berth', audience: 'berth', accessTtlSeconds: 900, keysDir: path.resolve('.data/keys') },
      sessions: { refreshIdleTtlSeconds: 14 * 86400, maxTtlSeconds: 30 * 86400, cacheMs: 1000 },
      argon2: { memoryCost: 19456, timeCost: 2, parallelism: 1 },
    });
  });

  it('reads BERTH_TRUST_PROXY as a flag or a list of proxy addresses', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ BERTH_TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ BERTH_TRUST_PROXY: '127.0.0.1,10.0.0.0/8' }).trustProxy).toBe('127.0.0.1,10.0.0.0/8');
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).port).toBe(8080);
  });

  it('lists every problem in one readable error', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', BERTH_REGISTRATION: 'maybe', DATABASE_URL: 'postgres://x/y', BERTH_ARGON2_MEMORY_KIB: '1024' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/^Invalid configuration:/);
    for (const name of ['PORT', 'BERTH_REGISTRATION', 'DATABASE_URL', 'BERTH_ARGON2_MEMORY_KIB']) expect(message).toContain(name);
  });

  it('refuses argon2 parameters below the OWASP minimum and an admin password under 8 characters', () => {
    expect(() => loadConfig({ BERTH_ARGON2_TIME_COST: '1' })).toThrow(/BERTH_ARGON2_TIME_COST/);
    expect(() => loadConfig({ ADMIN_PASSWORD: 'short' })).toThrow(/ADMIN_PASSWORD/);
  });

  it('refuses a session lifetime shorter than the access-token lifetime', () => {
    expect(() => loadConfig({ BERTH_SESSION_MAX_TTL_SECONDS: '60', BERTH_ACCESS_TOKEN_TTL_SECONDS: '900' })).toThrow(
      /BERTH_SESSION_MAX_TTL_SECONDS/,
    );
  });
});
