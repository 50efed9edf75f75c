// Security properties that only show under concurrency, checked over repeated rounds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/modules/identity/keyring.js';
import { PASSWORD, adminSession, createTestApp, json, register, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('a login racing a password change with kill_sessions', () => {
  it('never leaves a usable session opened with the old password', async () => {
    // The dangerous interleaving: the attacker reads the old hash just before the change
    // commits and opens its session just after. Starting the attacker at staggered delays
    // sweeps that window (argon2 makes each side take tens of milliseconds).
    for (let round = 0; round < 10; round++) {
      const name = `racer${round}`;
      await register(t.app, name);
      const owner = json(await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: name, password: PASSWORD } }));
      const [attacker, change] = await Promise.all([
        new Promise((r) => setTimeout(r, round * 10)).then(() =>
          t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: name, password: PASSWORD } }),
        ),
        t.app.inject({
          method: 'POST',
          url: '/v1/password/change',
          headers: { authorization: `Bearer ${owner.access_token}` },
          payload: { current_password: PASSWORD, new_password: `fresh passphrase ${round}x`, kill_sessions: true },
        }),
      ]);
      expect(change.statusCode).toBe(200);
      if (attacker.statusCode === 200) {
        const who = await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: { authorization: `Bearer ${json(attacker).access_token}` } });
        expect(who.statusCode).toBe(401);
      } else {
        expect(attacker.statusCode).toBe(401);
      }
    }
  });
});

describe('the last admin under concurrent changes', () => {
  it('always leaves an enabled admin', async () => {
    for (let round = 0; round < 5; round++) {
      const a = await adminSession(t, `adm-a${round}`);
      const b = await adminSession(t, `adm-b${round}`);
      // Only these two admins exist in this round.
      await t.prisma.user.updateMany({ where: { role: 'admin', id: { notIn: [a.userId, b.userId] } }, data: { role: 'user' } });
      await t.prisma.user.update({ where: { id: b.userId }, data: { disabled: true } });
      const patch = (id: string, payload: object) => t.app.inject({ method: 'PATCH', url: `/v1/users/${id}`, headers: a.auth, payload });
      const results = await Promise.all([patch(b.userId, { role: 'user' }), patch(b.userId, { disabled: false }), patch(a.userId, { disabled: true })]);
      for (const r of results) expect([200, 409]).toContain(r.statusCode);
      expect(await t.prisma.user.count({ where: { role: 'admin', disabled: false } })).toBeGreaterThanOrEqual(1);
      await t.prisma.user.updateMany({ where: { id: { in: [a.userId, b.userId] } }, data: { role: 'user', disabled: true } });
    }
  });
});

describe('key rotation by another process', () => {
  it('is picked up by a running keyring within its rescan interval, without SIGHUP', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-keys-'));
    try {
      const server = Keyring.open(dir, { rescanMs: 50 });
      const before = server.signingKey.kid;
      const { kid } = Keyring.open(dir).rotate(900); // the CLI, another process
      expect(server.signingKey.kid).toBe(before); // not yet: rescans are rate-limited
      await new Promise((r) => setTimeout(r, 80));
      expect(server.signingKey.kid).toBe(kid);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
