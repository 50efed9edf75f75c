// A private MariaDB server living in a directory: berth's default database when no
// DATABASE_URL is given, and the per-run database of the test suite. It listens only on
// a unix socket inside a 0700 directory, so nothing else on the machine can reach it.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createConnection } from 'mariadb';
import type { DatabaseTarget } from './database.js';

const run = promisify(execFile);
/** Unix socket paths longer than this do not fit in sockaddr_un. */
const MAX_SOCKET_PATH = 100;

export interface EmbeddedMariaDb {
  /** Root target without a database; create schemas with `ensureDatabase`. */
  readonly root: DatabaseTarget;
  target(database: string): DatabaseTarget;
  ensureDatabase(database: string): Promise<void>;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dir: string;
  startTimeoutMs?: number;
  log?: (msg: string) => void;
}

async function findBinary(name: string): Promise<string> {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found: install MariaDB (scripts/setup.sh does this as root: apt-get install mariadb-server)`);
}

async function socketPathFor(dir: string): Promise<string> {
  const preferred = path.join(dir, 'mysqld.sock');
  if (preferred.length <= MAX_SOCKET_PATH) return preferred;
  const short = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-db-'));
  await fs.chmod(short, 0o700);
  return path.join(short, 'mysqld.sock');
}

async function answers(target: DatabaseTarget): Promise<boolean> {
  try {
    const conn = await createConnection({ socketPath: target.socketPath, user: target.user, connectTimeout: 500 });
    await conn.end();
    return true;
  } catch {
    return false;
  }
}

async function tail(file: string, lines = 15): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n');
}

export async function startEmbeddedMariaDb(opts: EmbeddedOptions): Promise<EmbeddedMariaDb> {
  const log = opts.log ?? (() => {});
  const dir = path.resolve(opts.dir);
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'mariadb.log');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const asRoot = process.getuid?.() === 0;
  const userArgs = asRoot ? ['--user=root'] : [];

  if (!existsSync(path.join(dataDir, 'mysql'))) {
    log(`initialising a private MariaDB in ${dataDir}`);
    const installDb = await findBinary('mariadb-install-db');
    await run(installDb, [
      '--no-defaults',
      `--datadir=${dataDir}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      ...userArgs,
    ]);
  }

  const socketPath = await socketPathFor(dir);
  const root: DatabaseTarget = { socketPath, user: 'root', database: '' };
  let child: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  /** Starts mariadbd and waits until it answers. */
  async function launch(): Promise<void> {
    const mariadbd = await findBinary('mariadbd');
    const out = createWriteStream(logFile, { flags: 'a' });
    const server = spawn(
      mariadbd,
      [
        '--no-defaults',
        `--datadir=${dataDir}`,
        `--socket=${socketPath}`,
        `--pid-file=${path.join(dir, 'mariadbd.pid')}`,
        '--skip-networking',
        '--skip-log-bin',
        '--innodb-buffer-pool-size=128M',
        '--max-connections=500',
        ...userArgs,
      ],
      // Its own process group: a Ctrl-C meant for berth must not stop the database under it;
      // berth stops it last, after closing its connections.
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    child = server;
    server.stdout?.pipe(out);
    server.stderr?.pipe(out);
    // If berth exits without its orderly shutdown (a second Ctrl-C, an uncaught error),
    // still ask the server to stop; mariadbd shuts down cleanly on SIGTERM by itself.
    const stopOnExit = () => server.kill('SIGTERM');
    process.once('exit', stopOnExit);
    let exitCode: number | null | undefined;
    server.once('exit', (code, signal) => {
      exitCode = code;
      process.removeListener('exit', stopOnExit);
      if (!stopping && child === server) supervise(code, signal);
    });
    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
    while (!(await answers(root))) {
      if (exitCode !== undefined) {
        throw new Error(`mariadbd exited with code ${exitCode} before it was ready:\n${await tail(logFile)}`);
      }
      if (Date.now() > deadline) {
        server.kill('SIGKILL');
        throw new Error(`mariadbd did not answer within ${opts.startTimeoutMs ?? 30_000} ms:\n${await tail(logFile)}`);
      }
      await sleep(100);
    }
    log(`MariaDB ready on ${socketPath}`);
  }

  /**
   * mariadbd went away without being asked (killed, crashed): start it again, waiting
   * longer after each failed attempt (0.5 s, 1 s, 2 s … 30 s). berth's connections come
   * back by themselves once it answers; requests meanwhile get 503 database_unavailable.
   */
  function supervise(code: number | null, signal: NodeJS.Signals | null): void {
    const delay = Math.min(30_000, 500 * 2 ** restarts);
    restarts++;
    log(`MariaDB exited (${signal ?? `code ${code}`}); restarting it in ${delay / 1000} s`);
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (stopping) return;
      const startedAt = Date.now();
      launch().then(
        () => {
          log('MariaDB is back');
          // A server that stays up for a minute has recovered: the next failure starts the backoff over.
          setTimeout(() => {
            if (Date.now() - startedAt >= 60_000) restarts = 0;
          }, 60_000).unref();
        },
        // Its exit (by itself, or killed for not answering in time) schedules the next try.
        (err: Error) => log(`MariaDB did not come back: ${err.message.split('\n')[0]}`),
      );
    }, delay);
  }

  if (await answers(root)) {
    // A server left running by a process that crashed: take it over rather than fight it
    // (it is not supervised: berth did not start it).
    log(`reusing the MariaDB already listening on ${socketPath}`);
  } else {
    await launch();
  }

  return {
    root,
    target: (database) => ({ ...root, database }),
    async ensureDatabase(database) {
      if (!/^[A-Za-z0-9_]+$/.test(database)) throw new Error(`unsafe database name: ${database}`);
      const conn = await createConnection({ socketPath, user: 'root' });
      try {
        await conn.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
      } finally {
        await conn.end();
      }
    },
    async stop() {
      stopping = true;
      clearTimeout(restartTimer);
      if (child && child.exitCode === null && child.signalCode === null) {
        const done = new Promise((r) => child!.once('exit', r));
        child.kill('SIGTERM');
        await done;
        return;
      }
      if (!child) {
        // Adopted server: ask it to shut down over SQL.
        const conn = await createConnection({ socketPath, user: 'root' }).catch(() => undefined);
        await conn?.query('SHUTDOWN').catch(() => {});
        await conn?.end().catch(() => {});
      }
    },
  };
}
