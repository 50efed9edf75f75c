// How berth reaches MariaDB: a connection target (from DATABASE_URL or the embedded
// server) and the Prisma client built on the official mariadb driver adapter. When the
// database is down or stopped, an operation fails within `timeoutMs` instead of waiting
// for it; DatabaseUnavailableError and `isDatabaseUnavailable` name those failures.
import { timeLimit, withTimeout } from '../shared/time-limit.js';
import { PrismaMariaDb } from '@prisma/adapter-mariadb';
import type { EventEmitter } from 'node:events';
import { createConnection, createPool, type FieldInfo, type PoolConfig } from 'mariadb';
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
  return { ...connectionConfig(t), connectionLimit: 10, ...extra };
}

/** Where one connection of its own goes (migrations, their lease): the target's address and login. */
export function connectionConfig(t: DatabaseTarget): Pick<PoolConfig, 'host' | 'port' | 'socketPath' | 'user' | 'password' | 'database'> {
  return { host: t.host, port: t.port, socketPath: t.socketPath, user: t.user, password: t.password, database: t.database };
}

/** A write that hit a unique index: the name (or key) is taken. Through a model P2002; through raw SQL P2010, saying so in the adapter's cause. */
export function isUniqueViolation(err: unknown): boolean {
  if (!(err instanceof Prisma.PrismaClientKnownRequestError)) return false;
  const cause = (err.meta as { driverAdapterError?: { cause?: { kind?: string } } } | undefined)?.driverAdapterError?.cause;
  return err.code === 'P2002' || (err.code === 'P2010' && cause?.kind === 'UniqueConstraintViolation');
}

/**
 * Runs `work` (a whole transaction) again when MariaDB aborted it as one of two deadlocked
 * transactions (or, on a Galera cluster, as the loser of a certification conflict).
 */
export async function withDeadlockRetry<T>(work: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await work();
    } catch (err) {
      const code = (err as { code?: string }).code;
      const deadlock = code === 'P2034' || /deadlock|1213/i.test(String((err as Error).message));
      if (!deadlock || i >= attempts) throw err;
    }
  }
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

/** An operation that has not answered after this share of the timeout makes berth check the server. */
const CHECK_AFTER_SHARE = 0.6;
/** A slow operation on a server that answers is waited for up to this long. */
const SLOW_OPERATION_MAX_MS = 30_000;

/**
 * Whether the server answers a fresh connection's `SELECT 1` within `ms`: a stopped server
 * accepts connections and never answers; a busy one answers late. Concurrent askers
 * share one check.
 */
function createLivenessCheck(target: DatabaseTarget, ms: number): () => Promise<boolean> {
  let running: Promise<boolean> | null = null;
  async function check(): Promise<boolean> {
    let conn: Awaited<ReturnType<typeof createConnection>> | undefined;
    const limit = timeLimit(ms, () => new Error('no answer'));
    try {
      await Promise.race([
        (async () => {
          conn = await createConnection({ ...poolConfig(target), connectTimeout: ms });
          await conn.query('SELECT 1');
        })(),
        limit.expired,
      ]);
      return true;
    } catch {
      return false;
    } finally {
      limit.clear();
      conn?.destroy();
    }
  }
  return () => (running ??= check().finally(() => (running = null)));
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
   * booleans and JSON columns parsed.
   */
  $rows<T>(sql: string, values?: unknown[]): Promise<T[]>;
}

/** Prisma's client with the plain reads on its own pool. */
export type Database = PrismaClient & SqlReads;

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
 * The Prisma client for `target`. A stopped server (SIGSTOP, a hung host) accepts queries
 * and never answers, and a connection already handed out would wait for ever: an
 * operation that has not answered after most of `timeoutMs` makes berth check whether the
 * server answers at all. If it does not, the operation fails within `timeoutMs` with
 * DatabaseUnavailableError (its late answer, if any, is dropped); if it does, the server is
 * only busy, and the operation is waited for (up to 30 s).
 */
export function createPrisma(target: DatabaseTarget, timeoutMs = DEFAULT_DATABASE_TIMEOUT_MS): Database {
  const pool = createPool({ ...poolConfig(target, { acquireTimeout: timeoutMs, connectTimeout: Math.min(1000, timeoutMs) }), prepareCacheLength: 0 });
  // When the server goes away (killed, restarted, shut down under berth), the pool and
  // its connections emit 'error': with no listener, that ends the whole process. The
  // failure is answered where it matters: the query that meets it fails (503).
  const events = pool as unknown as EventEmitter;
  events.on('error', () => {});
  events.on('connection', (conn: EventEmitter) => conn.on('error', () => {}));
  const base = new PrismaClient({
    // berth's own pool (prepareCacheLength 0: what the adapter sets on pools it makes itself).
    adapter: new PrismaMariaDb(pool, { disposeExternalPool: true }),
    transactionOptions: { maxWait: timeoutMs },
  });
  const checkAfterMs = Math.round(timeoutMs * CHECK_AFTER_SHARE);
  const serverAnswers = createLivenessCheck(target, timeoutMs - checkAfterMs);
  const unavailable = (why: string) => () => new DatabaseUnavailableError(why);

  /** `answer`, or DatabaseUnavailableError when the server does not answer (see above). */
  async function inTime<T>(answer: Promise<T>): Promise<T> {
    const first = timeLimit(checkAfterMs, () => new Error('check'));
    try {
      return await Promise.race([answer, first.expired]);
    } catch (err) {
      if (!(err instanceof Error && err.message === 'check')) throw err;
    } finally {
      first.clear();
    }
    // Unanswered so far: down, or only busy?
    if (!(await serverAnswers())) {
      void answer.catch(() => {});
      throw new DatabaseUnavailableError(`the database did not answer within ${timeoutMs} ms`);
    }
    return withTimeout(answer, SLOW_OPERATION_MAX_MS, unavailable(`a database operation took more than ${SLOW_OPERATION_MAX_MS} ms`));
  }

  async function rows<T>(sql: string, values: unknown[] = []): Promise<T[]> {
    const result = (await pool.query({ sql, dateStrings: true }, values)) as Row[] & { meta: FieldInfo[] };
    const conversions = rowConversions(result.meta);
    if (conversions.length > 0) for (const row of result) for (const convert of conversions) convert(row);
    return result as T[];
  }

  const client = base.$extends({
    query: {
      $allOperations: ({ args, query }) => inTime(query(args)),
    },
    client: {
      $rows: <T>(sql: string, values?: unknown[]) => inTime(rows<T>(sql, values)),
    },
  });
  // The pool is berth's: it exists (and keeps the process alive) from here, whether or not
  // Prisma ever connected, so disconnecting ends it too.
  const disconnect = base.$disconnect.bind(base);
  Object.defineProperty(client, '$disconnect', {
    value: async () => {
      await disconnect();
      await pool.end().catch(() => {}); // ended already when Prisma had connected
    },
  });
  // The extension changes no model's shape: callers keep the plain client's type, plus $rows.
  return client as unknown as Database;
}

export type { PrismaClient };
