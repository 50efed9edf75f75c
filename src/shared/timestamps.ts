// A moment as berth's reads return it: a Date from Prisma, or the ISO 8601 string the plain
// list queries return (infra/database.ts, SqlReads), which is already what the API shows.

export type Timestamp = Date | string;

/** ISO 8601, as every answer writes times. */
export function isoOf(t: Timestamp): string {
  return typeof t === 'string' ? t : t.toISOString();
}

/** Milliseconds since the epoch. */
export function millisOf(t: Timestamp): number {
  return typeof t === 'string' ? Date.parse(t) : t.getTime();
}
