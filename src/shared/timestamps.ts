// Moments as berth's views carry them: ISO 8601 strings in UTC with milliseconds, which is
// what every answer writes. The plain list queries read DATETIME columns straight into
// this form (infra/database.ts, SqlReads: no Date made per row and written back per row);
// a single read through Prisma gets Dates, and its view converts them once (isoTime).

/** 'YYYY-MM-DDTHH:MM:SS.mmmZ'. */
export type IsoTime = string;

export const isoTime = (t: Date): IsoTime => t.toISOString();
export const isoTimeOrNull = (t: Date | null): IsoTime | null => (t === null ? null : t.toISOString());

/** A moment in either form, for code that takes both: a page's cursor (sessions are read through Prisma, reservations by plain SQL). */
export type Timestamp = Date | IsoTime;

/** ISO 8601, as every answer writes times. */
export function isoOf(t: Timestamp): string {
  return typeof t === 'string' ? t : t.toISOString();
}
