// A private MariaDB server living in a directory: berth's default database when no
// DATABASE_URL is given, and the per-run database of the test suite. It listens only on
// a unix socket inside a 0700 directory, so nothing else on the machine can reach it. It
// lives and dies with the process that started it: restarted when it exits, killed by
// the kernel when that process dies, however it dies.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
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

/** `name` from the system's directories; `debianPackage` is what provides it. */
async function findBinary(name: string, debianPackage = 'mariadb-server'): Promise<string> {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found: install it (scripts/setup.sh does this as root: apt-get install ${debianPackage})`);
}

/**
 * Where the server of `dir` listens: `dir/mysqld.sock`, or, when that path is too long for
 * a unix socket, the same name in a directory of the temporary directory (/tmp if that is
 * long too) named after `dir`. Either way the same path on every start (berth logs it once
 * the server is ready).
 */
export function embeddedSocketPath(dir: string): string {
  const preferred = path.join(path.resolve(dir), 'mysqld.sock');
  if (preferred.length <= MAX_SOCKET_PATH) return preferred;
  const id = createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 16);
  const inTemp = path.join(os.tmpdir(), `berth-mariadb-${id}`, 'mysqld.sock');
  return inTemp.length <= MAX_SOCKET_PATH ? inTemp : path.join('/tmp', `berth-mariadb-${id}`, 'mysqld.sock');
}

/**
 * The socket's directory outside `dir` is in a directory anyone may write to, and its
 * name can be guessed: it must be a real directory of ours, closed to everyone else.
 */
async function ensurePrivateDir(socketDir: string): Promise<void> {
  await fs.mkdir(socketDir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await fs.lstat(socketDir);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
    throw new Error(`${socketDir} (for the database's socket) is not a directory of this user closed to others: remove it`);
  }
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

  const socketPath = embeddedSocketPath(dir);
  if (path.dirname(socketPath) !== dir) await ensurePrivateDir(path.dirname(socketPath));
  const root: DatabaseTarget = { socketPath, user: 'root', database: '' };
  let child: ChildProcess | undefined;
  /** Restarts begin once the first start has succeeded: a first start that fails is the caller's error. */
  let supervising = false;
  let stopping = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  /** Starts mariadbd and waits until it answers. */
  async function launch(): Promise<void> {
    const mariadbd = await findBinary('mariadbd');
    // setpriv (util-linux) sets the parent-death signal (prctl PR_SET_PDEATHSIG), then
    // becomes mariadbd: when berth dies, even by SIGKILL or out of memory, the kernel kills
    // its server at once. No server outlives berth holding the data directory, and the next
    // start finds it free (InnoDB recovers from the kill as from a power cut). (The parent
    // is the thread that spawns it: Node's main thread, which lives as long as berth.)
    const setpriv = await findBinary('setpriv', 'util-linux');
    // Stopped while this start was on its way: no server after stop().
    if (stopping) throw new Error('the database is being stopped');
    const out = createWriteStream(logFile, { flags: 'a' });
    // A log that cannot be written (its directory gone) must not end berth with an unhandled error.
    out.on('error', (err) => log(`cannot write the MariaDB log: ${err.message}`));
    const server = spawn(
      setpriv,
      [
        '--pdeathsig=KILL',
        '--',
        mariadbd,
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
    let gone: string | undefined;
    const wentAway = (how: string) => {
      gone = how;
      if (supervising && !stopping && child === server) supervise(how);
    };
    server.once('exit', (code, signal) => wentAway(signal ?? `code ${code}`));
    // Not started at all (the system had no process to spare): no 'exit' follows, and
    // without a listener the error would end berth.
    server.once('error', (err) => {
      if (server.pid === undefined) wentAway(`not started: ${err.message}`);
      else log(`mariadbd: ${err.message}`);
    });
    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
    while (!(await answers(root))) {
      if (gone !== undefined) {
        throw new Error(`mariadbd exited (${gone}) before it was ready:\n${await tail(logFile)}`);
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
  function supervise(how: string): void {
    const delay = Math.min(30_000, 500 * 2 ** restarts);
    restarts++;
    log(`MariaDB exited (${how}); restarting it in ${delay / 1000} s`);
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
    // A server already answering here (another berth on this data directory, or one left
    // by a berth from before servers died with it): use it rather than fight it (it is not
    // supervised: this process did not start it).
    log(`reusing the MariaDB already listening on ${socketPath}`);
  } else {
    await launch();
    supervising = true;
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
