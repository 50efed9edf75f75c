// The bearer length berth accepts is worked out from what it signs: the longest token it
// can issue must fit with the whole margin to spare, for any issuer and audience.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/modules/identity/keyring.js';
import { accessTokenLengthLimit, createTokenIssuer } from '../../src/modules/identity/tokens.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-keys-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('accessTokenLengthLimit', () => {
  const keyring = Keyring.open(dir);
  for (const [issuer, audience] of [
    ['berth', 'berth'],
    ['https://berth.lab.example.org/', 'berth-api'],
    ['bérth "lab" ☃ \\ 🚢', 'ä'.repeat(300)],
  ] as const) {
    it(`leaves the full 512-character margin above the longest token (iss ${issuer})`, () => {
      const tokens = createTokenIssuer(keyring, { issuer, audience, accessTtlSeconds: 900 });
      const { token } = tokens.issueAccessToken(
        { sub: crypto.randomUUID(), sid: crypto.randomUUID(), username: 'a'.repeat(32), role: 'admin' },
        new Date(Date.now() + 3600_000),
      );
      expect(token.length).toBeLessThanOrEqual(accessTokenLengthLimit({ issuer, audience }) - 512);
    });
  }

  it('is about a kilobyte with the defaults', () => {
    expect(accessTokenLengthLimit({ issuer: 'berth', audience: 'berth' })).toBe(994);
  });
});
