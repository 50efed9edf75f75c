// List pages, and opaque cursors for lists ordered newest first by (created_at, id).
import { AppError } from '../errors/app-error.js';
import { isoOf, type Timestamp } from '../shared/timestamps.js';
import { sqlTime, type Condition } from './sql-where.js';

export function encodeCursor(row: { createdAt: Timestamp; id: string }): string {
  return Buffer.from(`${isoOf(row.createdAt)}|${row.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const createdAt = new Date(at ?? '');
  if (!id || Number.isNaN(createdAt.getTime())) throw new AppError('invalid_cursor', 'the cursor is not one this server issued');
  return { createdAt, id };
}

/** Prisma condition for "after this cursor" in (created_at desc, id desc) order. */
export function afterCursor(cursor: string | undefined) {
  if (!cursor) return {};
  const after = decodeCursor(cursor);
  return { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] };
}

/** The same condition in SQL, for `alias`.created_at and `alias`.id. */
export function afterCursorSql(cursor: string | undefined, alias: string): Condition {
  if (!cursor) return null;
  const after = decodeCursor(cursor);
  const at = sqlTime(after.createdAt);
  return [`${alias}.created_at < ? OR (${alias}.created_at = ? AND ${alias}.id < ?)`, at, at, after.id];
}

/**
 * One page of `rows` fetched with `take: limit + 1`: the extra row only says there is a
 * next page, which starts after `cursorOf` of this page's last item.
 */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (last: T) => string): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  return { items, nextCursor: rows.length > limit ? cursorOf(items[items.length - 1]!) : null };
}

/** Prisma condition for "after this cursor" in name order (lists of named things: the cursor is the last name). */
export function afterName(cursor: string | undefined) {
  return cursor ? { name: { gt: cursor } } : {};
}
