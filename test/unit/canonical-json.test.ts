import { describe, expect, it } from 'vitest';
import { canonicalJson, createRequestHasher } from '../../src/modules/reservations/idempotency.js';

describe('idempotent request bodies', () => {
  it('are equal when their JSON is, whatever the key order; undefined members do not count', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, 1], c: null } })).toBe('{"a":{"c":null,"d":[2,1]},"b":1}');
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
  });

  it('are compared by a keyed hash: another key, another hash; the body itself is not in it', () => {
    const body = { count: 2, password: 'secret passphrase' };
    const hash = createRequestHasher(Buffer.alloc(32, 1));
    expect(hash(body)).toBe(hash({ password: 'secret passphrase', count: 2 }));
    expect(hash(body)).not.toBe(createRequestHasher(Buffer.alloc(32, 2))(body));
    expect(hash(body)).toMatch(/^[0-9a-f]{64}$/);
  });
});
