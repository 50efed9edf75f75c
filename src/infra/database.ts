// How berth reaches MariaDB: a connection target (from DATABASE_URL or the embedded
// server) and the Prisma client built on the official mariadb driver adapter.
import { PrismaMariaDb } from '@prisma/adapter-mariadb';
import type { PoolConfig } from 'mariadb';
import { PrismaClient } from '../generated/prisma/client.js';

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

export function createPrisma(target: DatabaseTarget): PrismaClient {
  return new PrismaClient({ adapter: new PrismaMariaDb(poolConfig(target)) });
}

export type { PrismaClient };
