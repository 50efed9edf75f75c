// How berth reaches MariaDB: a connection target (from DATABASE_URL or the embedded
// server) and the Prisma client built on the official mariadb driver adapter. When the
// database is down or stopped, an operation fails within `timeoutMs` instead of waiting
// for it; DatabaseUnavailableError and `isDatabaseUnavailable` name those failures.
import { PrismaMariaDb } from '@prisma/adapter-mariadb';
import type { FieldInfo, Pool, PoolConfig } from 'mariadb';
import { Prisma, PrismaClient } from '../generated/prisma/client.js';

/** Where the database is: TCP host/port or a unix socket, plus credentials and schema. */
export interface DatabaseTarget {
  host?: string;
  port?: number;
  socketPath?: string;
  user: string;
  password?: string;
  database: string;
}

export function parseDatabaseUrl(url: string): DatabaseTarget {
  const u = new URL(url);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new Error('DATABASE_URL must name a database, e.g. mysql://user:pass@host:3306/berth');
  const socketPath = u.searchParams.get('socket') ?? undefined;
  return {
    host: socketPath ? undefined : u.hostname || '127.0.0.1',
    port: socketPath ? undefined : Number(u.port || 3306),
    socketPath,
    user: decodeURIComponent(u.username) || 'root',
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database,
  };
}

/** A printable form without the password, for logs and error messages. */
export function describeTarget(t: DatabaseTarget): string {
  const where = t.socketPath ? `unix:${t.socketPath}` : `${t.host}:${t.port}`;
  return `${t.user}@${where}/${t.database}`;
}

export function poolConfig(t: DatabaseTarget, extra: Partial<PoolConfig> = {}): PoolConfig {
  return {
    host: t.host,
    port: t.port,
    socketPath: t.socketPath,
    user: t.user,
    password: t.password,
    database: t.database,
    connectionLimit: 10,
    ...extra,
  };
}

/** A write that hit a unique index: the name (or key) is taken. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/** How long one database operation may take, waiting for a connection included. */
export const DEFAULT_DATABASE_TIMEOUT_MS = 2000;

export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
}

/**
 * Client-side codes of the mariadb driver (45000-45099: connection closed, socket
 * timeout, pool timeout …) and the server's own "gone away" family.
 */
function isConnectionCode(code: unknown): boolean {
  const n = Number(code);
  return (n >= 45000 && n < 45100) || [1053, 1077, 1927, 2002, 2003, 2006, 2013].includes(n);
}

const SOCKET_ERRORS = ['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ENOENT', 'ETIMEDOUT'];

/** Whether `err` says the database cannot be reached right now (not that a query was wrong). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (err instanceof DatabaseUnavailableError || err instanceof Prisma.PrismaClientInitializationError) return true;
  // The driver's own error, not wrapped by Prisma (seen when a transaction starts on a broken socket).
  const driver = err as { sqlState?: unknown; code?: unknown; errno?: unknown } | null;
  if (driver && typeof driver === 'object' && 'sqlState' in driver) {
    return SOCKET_ERRORS.includes(String(driver.code)) || isConnectionCode(driver.errno);
  }
  if (err instanceof Prisma.PrismaClientKnownRequestError) {
    // P1001 can't reach, P1002 timed out, P1008 operation timed out, P1017 connection
    // closed, P2024 pool timeout, P2028 a transaction could not start in time; a socket
    // that broke under a query comes through with the system's own code (EPIPE …).
    if (['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2028', ...SOCKET_ERRORS].includes(err.code)) return true;
    const cause = (err.meta as { driverAdapterError?: { cause?: { code?: unknown; state?: string } } } | undefined)?.driverAdapterError?.cause;
    // SQLSTATE class 08: connection exception.
    return cause !== undefined && (isConnectionCode(cause.code) || cause.state?.startsWith('08') === true);
  }
  return false;
}

/** `work`, or DatabaseUnavailableError once `timeoutMs` passed without an answer (the late answer is dropped). */
async function withDeadline<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseUnavailableError(`the database did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Plain SQL for the reads clients poll (the lists). Through Prisma a list of 20 machines
 * costs about five times what the same SELECT costs through the driver (the query plan,
 * then every value converted twice); these go straight to the pool Prisma uses, in one
 * round trip of the text protocol.
 */
export interface SqlReads {
  /**
   * The rows of `sql`, whose `?` placeholders the driver fills with `values`, escaped.
   * DATETIME columns come back as ISO 8601 strings (berth stores UTC), TINYINT(1) as
   * booleans and JSON (a JSON column, JSON_OBJECT, JSON_ARRAYAGG) parsed.
   */
  $rows<T>(sql: string, values?: unknown[]): Promise<T[]>;
}

/** Prisma's client with the plain reads on its own pool. */
export type Database = PrismaClient & SqlReads;

/** The Prisma adapter, remembering the pool it made, which the plain reads share. */
class SharedPoolMariaDb extends PrismaMariaDb {
  pool: Pool | undefined;
  override async connect() {
    const adapter = await super.connect();
    this.pool = adapter.underlyingDriver();
    return adapter;
  }
}

/** 'YYYY-MM-DD HH:MM:SS.mmm' (a DATETIME(3) as the text protocol sends it, UTC) as ISO 8601. */
const isoFromSql = (value: string) => `${value.slice(0, 10)}T${value.slice(11)}Z`;

type Row = Record<string, unknown>;

/** What to change in each row of a result, worked out once from its columns. */
function rowConversions(meta: FieldInfo[]): ((row: Row) => void)[] {
  const conversions: ((row: Row) => void)[] = [];
  for (const field of meta) {
    const name = field.name();
    if (field.type === 'DATETIME') {
      conversions.push((row) => {
        const v = row[name];
        if (typeof v === 'string') row[name] = isoFromSql(v);
      });
    } else if (field.type === 'TINY' && field.columnLength === 1) {
      conversions.push((row) => {
        if (row[name] !== null) row[name] = row[name] === 1;
      });
    }
  }
  return conversions;
}

/**
 * The Prisma client for `target`. Every operation races a deadline: a stopped server
 * (SIGSTOP, a hung host) accepts the query and never answers, and a connection already
 * handed out would wait for ever. The late answer, if any, is dropped.
 */
export function createPrisma(target: DatabaseTarget, timeoutMs = DEFAULT_DATABASE_TIMEOUT_MS): Database {
  const adapter = new SharedPoolMariaDb(poolConfig(target, { acquireTimeout: timeoutMs, connectTimeout: Math.min(1000, timeoutMs) }));
  const base = new PrismaClient({ adapter, transactionOptions: { maxWait: timeoutMs } });

  async function rows<T>(sql: string, values: unknown[] = []): Promise<T[]> {
    // Prisma makes its pool on connecting, and a new one after a disconnect.
    if (!adapter.pool || adapter.pool.closed) await base.$connect();
    const result = (await adapter.pool!.query({ sql, dateStrings: true }, values)) as Row[] & { meta: FieldInfo[] };
    const conversions = rowConversions(result.meta);
    if (conversions.length > 0) for (const row of result) for (const convert of conversions) convert(row);
    return result as T[];
  }

  const client = base.$extends({
    query: {
      $allOperations: ({ args, query }) => withDeadline(query(args), timeoutMs),
    },
    client: {
      $rows: <T>(sql: string, values?: unknown[]) => withDeadline(rows<T>(sql, values), timeoutMs),
    },
  });
  // The extension changes no model's shape: callers keep the plain client's type.
  return client as unknown as Database;
}

export type { PrismaClient };
