// berth's migration runner: Prisma's folder layout and history table, applied once even
// when several processes start together (a lease row, not GET_LOCK: Galera has none),
// refusing to run over a half-applied migration.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { takeLease } from '../../src/infra/migration-lease.js';
import { MIGRATIONS_DIR, MigrationError, migrate, readMigrations } from '../../src/infra/migrations.js';
import { createEmptyDatabase, rootQuery } from '../helpers/db.js';

interface HistoryRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  applied_steps_count: number;
  rolled_back_at: Date | null;
}

describe('migrate()', () => {
  it('applies every migration once and records it the way prisma migrate deploy does', async () => {
    const db = await createEmptyDatabase('mig');
    try {
      const names = fs.readdirSync(MIGRATIONS_DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
      expect(await migrate(db.target)).toEqual(names);
      expect(await migrate(db.target)).toEqual([]); // idempotent
      const rows = await rootQuery<HistoryRow[]>('SELECT * FROM _prisma_migrations ORDER BY migration_name', [], db.target.database);
      expect(rows.map((r) => r.migration_name)).toEqual(names);
      for (const row of rows) {
        const sql = fs.readFileSync(path.join(MIGRATIONS_DIR, row.migration_name, 'migration.sql'));
        expect(row.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
        expect(row.finished_at).toBeInstanceOf(Date);
        expect(row.applied_steps_count).toBe(1);
        expect(row.rolled_back_at).toBeNull();
      }
      expect(fs.readFileSync(path.join(MIGRATIONS_DIR, 'migration_lock.toml'), 'utf8')).toContain('provider = "mysql"');
    } finally {
      await db.drop();
    }
  });

  it('applies each migration exactly once when four processes migrate at the same moment', async () => {
    const db = await createEmptyDatabase('mig');
    try {
      const results = await Promise.all([1, 2, 3, 4].map(() => migrate(db.target)));
      const total = (await readMigrations()).length;
      expect(results.flat()).toHaveLength(total);
      const rows = await rootQuery<{ n: bigint }[]>('SELECT COUNT(*) AS n FROM _prisma_migrations', [], db.target.database);
      expect(Number(rows[0]?.n)).toBe(total);
    } finally {
      await db.drop();
    }
  });

  it('records a failing migration and then refuses to start until it is resolved', async () => {
    const db = await createEmptyDatabase('mig');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-mig-'));
    try {
      fs.mkdirSync(path.join(dir, '20260101000000_good'));
      fs.writeFileSync(path.join(dir, '20260101000000_good', 'migration.sql'), 'CREATE TABLE a (id INT PRIMARY KEY);');
      fs.mkdirSync(path.join(dir, '20260102000000_bad'));
      fs.writeFileSync(path.join(dir, '20260102000000_bad', 'migration.sql'), 'CREATE TABLE b (id INT PRIMARY KEY);\nTHIS IS NOT SQL;');
      await expect(migrate(db.target, { dir })).rejects.toThrow(/20260102000000_bad failed/);
      const rows = await rootQuery<HistoryRow[]>('SELECT * FROM _prisma_migrations ORDER BY migration_name', [], db.target.database);
      expect(rows.map((r) => [r.migration_name, r.finished_at !== null])).toEqual([
        ['20260101000000_good', true],
        ['20260102000000_bad', false],
      ]);
      const again = migrate(db.target, { dir });
      await expect(again).rejects.toBeInstanceOf(MigrationError);
      await expect(migrate(db.target, { dir })).rejects.toThrow(/half-applied/);
    } finally {
      await db.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('applies each migration once when two migrate() calls start together on a fresh database, and leaves no lease behind', async () => {
    const db = await createEmptyDatabase('mig');
    try {
      const results = await Promise.all([migrate(db.target), migrate(db.target)]);
      const names = (await readMigrations()).map((m) => m.name);
      // One applied everything while the other waited for the lease, then found nothing to do.
      expect(results.map((r) => r.length).sort((a, b) => a - b)).toEqual([0, names.length]);
      const rows = await rootQuery<{ migration_name: string }[]>('SELECT migration_name FROM _prisma_migrations', [], db.target.database);
      expect(rows.map((r) => r.migration_name).sort()).toEqual(names);
      expect(await leaseRows(db.target.database)).toEqual([]);
    } finally {
      await db.drop();
    }
  });

  it('takes over a lease whose owner is gone: at once when it ran out, after it runs out when it is still current', async () => {
    const db = await createEmptyDatabase('mig');
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-mig-'));
    try {
      await migrate(db.target, { dir: empty }); // makes the lease table, applies nothing
      const plant = (seconds: number) =>
        rootQuery(
          "REPLACE INTO _berth_migration_lock (name, owner, lease_until) VALUES ('berth_migrations', 'a-process-killed-mid-migration', NOW(3) + INTERVAL ? SECOND)",
          [seconds],
          db.target.database,
        );
      await plant(-60);
      expect(await migrate(db.target, { dir: empty })).toEqual([]);
      expect(await leaseRows(db.target.database)).toEqual([]);

      await plant(3);
      const started = Date.now();
      expect(await migrate(db.target)).toHaveLength((await readMigrations()).length);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
      expect(await leaseRows(db.target.database)).toEqual([]);
    } finally {
      await db.drop();
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it('renews a lease while it is held, and says so when another process took it over', async () => {
    const db = await createEmptyDatabase('mig');
    const options = (timeoutSeconds: number) => ({
      name: 'renewal-test',
      leaseSeconds: 1,
      timeoutSeconds,
      pollMs: 50,
      onTimeout: () => new MigrationError('timed out'),
    });
    try {
      const holder = await takeLease(db.target, options(1));
      // Three lease lengths later the lease still holds: a rival gives up waiting.
      await expect(takeLease(db.target, options(3))).rejects.toThrow('timed out');
      expect(holder.lostBecause()).toBeNull();
      await holder.release();
      const next = await takeLease(db.target, options(1));

      // The row given to someone else behind the holder's back: its next renewal notices.
      await rootQuery("UPDATE _berth_migration_lock SET owner = 'someone-else' WHERE name = 'renewal-test'", [], db.target.database);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(next.lostBecause()).toMatch(/taken over by another process/);
      await next.release();
      expect(await leaseRows(db.target.database)).toEqual([{ name: 'renewal-test', owner: 'someone-else' }]);
    } finally {
      await db.drop();
    }
  });

  it('calls no GET_LOCK anywhere in src/ (Galera does not support it)', () => {
    // Calls, not mentions: comments may say why it is not used.
    const namedLockCall = /\b(GET_LOCK|RELEASE_LOCK|RELEASE_ALL_LOCKS|IS_FREE_LOCK|IS_USED_LOCK)\s*\(/i;
    const offenders = fs
      .readdirSync('src', { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts') && namedLockCall.test(fs.readFileSync(path.join('src', file), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

const leaseRows = (database: string) => rootQuery<{ name: string; owner: string }[]>('SELECT name, owner FROM _berth_migration_lock', [], database).then((rows) => [...rows]);
