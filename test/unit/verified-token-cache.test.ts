// The cache of verified access tokens: bounded in bytes, least recently used out first,
// nothing returned past its expiry.
import { describe, expect, it } from 'vitest';
import { VerifiedTokenCache, entryBytes } from '../../src/modules/identity/verified-tokens.js';

const entry = (expiresAt = Number.MAX_SAFE_INTEGER) => ({ claims: {}, kid: 'k', expiresAt });
const token = (i: number) => `token-${String(i).padStart(4, '0')}.${'x'.repeat(500)}`;

describe('VerifiedTokenCache', () => {
  it('never holds more bytes than its bound, however many tokens it is given', () => {
    const cache = new VerifiedTokenCache(20 * entryBytes(token(0)));
    for (let i = 0; i < 1000; i++) {
      cache.remember(token(i), entry());
      expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes);
    }
    expect(cache.size).toBe(20);
    expect(cache.bytes).toBe(20 * entryBytes(token(0)));
    // The newest stayed, the oldest left.
    expect(cache.get(token(999), 0)).toBeDefined();
    expect(cache.get(token(0), 0)).toBeUndefined();
  });

  it('evicts the least recently used token, not the least recently added', () => {
    const cache = new VerifiedTokenCache(3 * entryBytes(token(0)));
    for (const i of [1, 2, 3]) cache.remember(token(i), entry());
    cache.get(token(1), 0); // used: now the most recent
    cache.remember(token(4), entry());
    expect(cache.get(token(2), 0)).toBeUndefined();
    for (const i of [1, 3, 4]) expect(cache.get(token(i), 0)).toBeDefined();
  });

  it('forgets a token once it has expired, and counts it out', () => {
    const cache = new VerifiedTokenCache(1024 * 1024);
    cache.remember(token(1), entry(1000));
    expect(cache.get(token(1), 999)).toBeDefined();
    expect(cache.get(token(1), 1000)).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });

  it('does not count a token twice when it is remembered again', () => {
    const cache = new VerifiedTokenCache(1024 * 1024);
    cache.remember(token(1), entry());
    cache.remember(token(1), entry());
    expect(cache.bytes).toBe(entryBytes(token(1)));
  });
});
