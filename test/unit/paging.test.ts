import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/app-error.js';
import { afterCursor, afterName, decodeCursor, encodeCursor, pageOf } from '../../src/infra/paging.js';

describe('cursors', () => {
  it('round-trip (created_at, id) and refuse what this server did not issue', () => {
    const row = { createdAt: new Date('2026-11-21T09:30:00.123Z'), id: '0b6f9a52-6a43-4c55-9f0e-3b0d7f1f2a10' };
    expect(decodeCursor(encodeCursor(row))).toEqual(row);
    for (const forged of ['', 'bm90IGEgY3Vyc29y', Buffer.from('2026-13-45|x').toString('base64url'), Buffer.from('2026-11-21T09:30:00Z|').toString('base64url')]) {
      expect(() => decodeCursor(forged)).toThrow(AppError);
      try {
        decodeCursor(forged);
      } catch (err) {
        expect((err as AppError).code).toBe('invalid_cursor');
      }
    }
  });

  it('turn into conditions: after (created_at desc, id desc), or after a name', () => {
    expect(afterCursor(undefined)).toEqual({});
    const at = new Date('2026-11-21T09:30:00Z');
    expect(afterCursor(encodeCursor({ createdAt: at, id: 'b' }))).toEqual({ OR: [{ createdAt: { lt: at } }, { createdAt: at, id: { lt: 'b' } }] });
    expect(afterName(undefined)).toEqual({});
    expect(afterName('gpu-01')).toEqual({ name: { gt: 'gpu-01' } });
  });

  it('pages: the extra row only says that there is a next page', () => {
    expect(pageOf([1, 2, 3], 3, String)).toEqual({ items: [1, 2, 3], nextCursor: null });
    expect(pageOf([1, 2, 3, 4], 3, String)).toEqual({ items: [1, 2, 3], nextCursor: '3' });
  });
});
