// A fresh, migrated database on the run's MariaDB for each test file.
import { randomBytes } from 'node:crypto';
import { createConnection } from 'mariadb';
import { inject } from 'vitest';
import type { DatabaseTarget } from '../../src/infra/database.js';
import { migrate } from '../../src/infra/migrations.js';

export function rootTarget(database = ''): DatabaseTarget {
  return { socketPath: inject('mariadbSocket'), user: 'root', database };
}

export async function rootQuery<T = unknown>(sql: string, params: unknown[] = [], database = ''): Promise<T> {
  const conn = await createConnection({ socketPath: inject('mariadbSocket'), user: 'root', database: database || undefined });
  try {
    return (await conn.query(sql, params)) as T;
  } finally {
    await conn.end();
  }
}

/** Creates an empty database; the caller migrates it (or not) and drops it. */
export async function createEmptyDatabase(prefix = 't'): Promise<{ target: DatabaseTarget; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await rootQuery(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  return {
    target: rootTarget(name),
    drop: () => rootQuery(`DROP DATABASE IF EXISTS \`${name}\``),
  };
}

export async function createMigratedDatabase(prefix = 't') {
  const db = await createEmptyDatabase(prefix);
  await migrate(db.target);
  return db;
}
