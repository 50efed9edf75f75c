// `npm start` stopped the ways people stop it: Ctrl-C in a terminal (SIGINT to the whole
// foreground group: npm, and berth, which npm also forwards it to), a process-group
// SIGTERM, and `docker stop` (SIGTERM to berth alone). Each time berth shuts down
// gracefully: the request in flight is answered, then the job and the embedded database
// stop, and nothing is killed half-way.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callJson } from '../helpers/server-process.js';
import { rootKey, slowDownUseradd, startMachine, type TestMachine } from '../helpers/ssh-machines.js';

const ADMIN_PASSWORD = 'shutdown admin passphrase';
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-shutdown-'));
let machine: TestMachine;

beforeAll(async () => {
  machine = await startMachine('shutdown');
  await slowDownUseradd(machine, 2);
});
afterAll(async () => {
  await machine.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Started {
  npm: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<void>;
}

/** `npm start` as a terminal runs it: the leader of its own process group. */
async function npmStart(): Promise<Started> {
  const npm = spawn('npm', ['start'], {
    detached: true,
    env: { ...process.env, BERTH_DATA_DIR: dataDir, PORT: '0', ADMIN_PASSWORD, LOG_LEVEL: 'warn', BERTH_VM_ACCEL: 'tcg', BERTH_CACHE_DIR: path.resolve('.data/cache') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout!.on('data', (d) => (out += d));
  npm.stderr!.on('data', (d) => (out += d));
  // 'close': npm has exited and so has berth, which writes to the same pipes.
  const exited = new Promise<void>((resolve) => npm.once('close', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm start did not serve in time:\n${out}`)), 150_000);
    npm.stdout!.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then(() => reject(new Error(`npm start exited:\n${out}`)));
  });
  return { npm, url, output: () => out, exited };
}

const mariadbRunning = () => {
  try {
    return execFileSync('pgrep', ['-f', '--', `--datadir=${path.join(dataDir, 'mariadb', 'data')}`]).toString().trim() !== '';
  } catch {
    return false;
  }
};

/** berth's own process: npm's child (the shell before it exec'd node). */
const berthPid = (npm: ChildProcess) => Number(execFileSync('pgrep', ['-P', String(npm.pid)]).toString().trim().split('\n')[0]);

async function expectGracefulStop(s: Started, signal: string) {
  await s.exited;
  const out = s.output();
  expect(out).toContain(`[berth] ${signal}: shutting down`);
  expect(out).toContain('[berth] stopped');
  expect(out).not.toMatch(/again: stopping without waiting|killed by timeout/);
  expect(mariadbRunning()).toBe(false);
  // The database was shut down, not killed: its log ends with an orderly shutdown.
  const log = fs.readFileSync(path.join(dataDir, 'mariadb', 'mariadb.log'), 'utf8');
  expect(log.slice(log.lastIndexOf('Starting MariaDB'))).toMatch(/Shutdown complete/);
}

describe('npm start', () => {
  it('finishes the request in flight and stops everything on one Ctrl-C', { timeout: 240_000 }, async () => {
    const s = await npmStart();
    const admin = (await callJson(s.url, 'POST', '/v1/token', undefined, { username: 'admin', password: ADMIN_PASSWORD })).body.access_token;
    const registered = await callJson(s.url, 'POST', '/v1/machines', admin, {
      name: machine.name, host: machine.host, port: machine.port, username: 'root', private_key: rootKey.private, host_key: machine.hostKey,
    });
    expect(registered.status).toBe(201);
    // useradd takes 2 s on this machine: the reservation is in flight when Ctrl-C comes.
    const inFlight = callJson(s.url, 'POST', '/v1/reservations', admin, { count: 1, username: 'late' });
    await new Promise((r) => setTimeout(r, 700));
    process.kill(-s.npm.pid!, 'SIGINT');
    const answered = await inFlight;
    expect(answered.status).toBe(201);
    expect(answered.body.status).toBe('active');
    await expectGracefulStop(s, 'SIGINT');
  });

  it('stops gracefully on a SIGTERM to its process group', { timeout: 120_000 }, async () => {
    const s = await npmStart();
    expect(s.output()).not.toContain('compiling berth'); // the second start reuses the build
    process.kill(-s.npm.pid!, 'SIGTERM');
    await expectGracefulStop(s, 'SIGTERM');
  });

  it('stops gracefully on a SIGTERM to berth alone (docker stop)', { timeout: 120_000 }, async () => {
    const s = await npmStart();
    process.kill(berthPid(s.npm), 'SIGTERM');
    await expectGracefulStop(s, 'SIGTERM');
  });
});
