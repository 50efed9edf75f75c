// The database berth runs on: DATABASE_URL when given, else a private MariaDB in the data
// directory. Either way it is migrated before anything else touches it.
import path from 'node:path';
import type { Config } from '../config.js';
import { createPrisma, describeTarget, parseDatabaseUrl, type Database, type DatabaseTarget } from './database.js';
import { startEmbeddedMariaDb } from './embedded-mariadb.js';
import { migrate } from './migrations.js';

export interface OpenDatabase {
  prisma: Database;
  target: DatabaseTarget;
  close(): Promise<void>;
}

export const EMBEDDED_DATABASE = 'berth';

export async function openDatabase(config: Config, log: (msg: string) => void): Promise<OpenDatabase> {
  let target: DatabaseTarget;
  let stopEmbedded = async () => {};
  if (config.databaseUrl) {
    target = parseDatabaseUrl(config.databaseUrl);
  } else {
    const embedded = await startEmbeddedMariaDb({ dir: path.join(config.dataDir, 'mariadb'), log });
    await embedded.ensureDatabase(EMBEDDED_DATABASE);
    target = embedded.target(EMBEDDED_DATABASE);
    stopEmbedded = () => embedded.stop();
  }
  log(`database ${describeTarget(target)}`);
  for (const name of await migrate(target, { log })) log(`migrated: ${name}`);
  const prisma = createPrisma(target, config.databaseTimeoutMs);
  return {
    prisma,
    target,
    async close() {
      await prisma.$disconnect();
      await stopEmbedded();
    },
  };
}
