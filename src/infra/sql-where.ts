// WHERE clauses for the plain list queries (SqlReads in database.ts): conditions that apply
// only when a filter was given, each with the values of its `?` placeholders.
import { Prisma } from '../generated/prisma/client.js';

/**
 * A moment as a bound value: UTC text ('YYYY-MM-DD HH:MM:SS.mmm'), as berth stores it (a Date
 * would be sent in the process's time zone).
 */
export const sqlTime = (t: Date) => t.toISOString().slice(0, 23).replace('T', ' ');

/** A condition with the values of its placeholders; false, null or undefined when its filter is absent. */
export type Condition = readonly [sql: string, ...values: unknown[]] | false | null | undefined;

/** `WHERE a AND b …` of the conditions present (or nothing), with their values in order. */
export function whereAll(conditions: Condition[]): { sql: string; values: unknown[] } {
  const present = conditions.filter((c): c is readonly [string, ...unknown[]] => Boolean(c));
  if (present.length === 0) return { sql: '', values: [] };
  return { sql: `WHERE ${present.map(([sql]) => `(${sql})`).join(' AND ')}`, values: present.flatMap(([, ...values]) => values) };
}

/** A condition of whereAll's form, for a query Prisma runs (a transaction's). */
export const asPrismaSql = ([sql, ...values]: readonly [string, ...unknown[]]): Prisma.Sql => new Prisma.Sql(sql.split('?'), values as Prisma.Sql['values']);
