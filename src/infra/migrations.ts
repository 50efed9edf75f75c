// Applies prisma/migrations/<name>/migration.sql in order and records each in Prisma's own
// `_prisma_migrations` table, so `prisma migrate deploy` (where Prisma's schema engine
// exists) sees the same history. Several processes may start at once: a lease row
// (migration-lease.ts; not GET_LOCK, which a Galera cluster does not share between its
// nodes) makes the second wait for the first instead of applying a migration twice.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConnection, type Connection } from 'mariadb';
import { connectionConfig, type DatabaseTarget } from './database.js';
import { takeLease, type Lease } from './migration-lease.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));
const LOCK_NAME = 'berth_migrations';
const LOCK_TIMEOUT_SECONDS = 120;
// Renewed every 10 s while migrating: a process that died holding it delays the next one by 30 s at most.
const LEASE_SECONDS = 30;

// The exact table Prisma creates for MySQL-family databases.
const CREATE_HISTORY_TABLE = `
CREATE TABLE IF NOT EXISTS _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             DATETIME(3),
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          DATETIME(3),
    started_at              DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    applied_steps_count     INTEGER UNSIGNED NOT NULL DEFAULT 0
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`;

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

interface HistoryRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await fs.readFile(path.join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** Brings the database up to date; returns the names of the migrations it applied. */
export async function migrate(
  target: DatabaseTarget,
  opts: { dir?: string; log?: (msg: string) => void } = {},
): Promise<string[]> {
  const log = opts.log ?? (() => {});
  const migrations = await readMigrations(opts.dir);
  const lease = await takeLease(target, {
    name: LOCK_NAME,
    leaseSeconds: LEASE_SECONDS,
    timeoutSeconds: LOCK_TIMEOUT_SECONDS,
    onTimeout: () => new MigrationError('timed out waiting for another process to finish migrating'),
  });
  try {
    const conn = await createConnection({ ...connectionConfig(target), multipleStatements: true });
    try {
      return await applyPending(conn, migrations, lease, log);
    } finally {
      await conn.end();
    }
  } finally {
    await lease.release();
  }
}

async function applyPending(conn: Connection, migrations: Migration[], lease: Lease, log: (msg: string) => void): Promise<string[]> {
  await conn.query(CREATE_HISTORY_TABLE);
  const rows: HistoryRow[] = await conn.query(
    'SELECT migration_name, checksum, finished_at, rolled_back_at FROM _prisma_migrations',
  );
  const failed = rows.find((r) => r.finished_at === null && r.rolled_back_at === null);
  if (failed) {
    throw new MigrationError(
      `migration ${failed.migration_name} failed earlier and was left half-applied; repair the database, ` +
        `then mark it rolled back (UPDATE _prisma_migrations SET rolled_back_at = NOW(3) WHERE migration_name = '${failed.migration_name}')`,
    );
  }
  const applied = new Map(rows.filter((r) => r.finished_at !== null).map((r) => [r.migration_name, r.checksum]));
  for (const [name, checksum] of applied) {
    const local = migrations.find((m) => m.name === name);
    if (local && local.checksum !== checksum) {
      log(`warning: migration ${name} was edited after it was applied (checksum differs)`);
    }
  }

  const done: string[] = [];
  for (const m of migrations.filter((m) => !applied.has(m.name))) {
    // A process stalled past its lease may have been taken over: it must not start another migration.
    const lost = lease.lostBecause();
    if (lost) throw new MigrationError(`stopped before ${m.name}: ${lost}`);
    const id = randomUUID();
    await conn.query(
      'INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) VALUES (?, ?, ?, NOW(3), 0)',
      [id, m.checksum, m.name],
    );
    try {
      await conn.query(m.sql);
    } catch (err) {
      await conn.query('UPDATE _prisma_migrations SET logs = ? WHERE id = ?', [String(err), id]);
      throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`);
    }
    await conn.query('UPDATE _prisma_migrations SET finished_at = NOW(3), applied_steps_count = 1 WHERE id = ?', [id]);
    log(`applied migration ${m.name}`);
    done.push(m.name);
  }
  return done;
}
