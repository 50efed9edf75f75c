// berth's migration runner: Prisma's folder layout and history table, applied once even
// when several processes start together, refusing to run over a half-applied migration.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
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
});
