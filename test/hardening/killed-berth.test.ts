// berth killed outright (SIGKILL, as the out-of-memory killer does) takes its embedded
// MariaDB with it: no server is left running without a parent, holding the data directory.
// The next berth on the same data directory starts its own and serves.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { callJson, startServer, type ServerProcess } from '../helpers/server-process.js';

const ADMIN_PASSWORD = 'killed berth admin passphrase';
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-killed-'));
const servers: ServerProcess[] = [];
let firstMariadbd = 0;
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  // A server the killed berth left behind (what this test is about) is not left running.
  if (firstMariadbd && mariadbdRunning(firstMariadbd)) process.kill(firstMariadbd, 'SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Whether `pid` is a mariadbd that has not exited (a zombie waiting to be reaped has). */
function mariadbdRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // "pid (comm) state …"
  const m = /^\d+ \((.*)\) (\S)/.exec(stat);
  return m?.[1] === 'mariadbd' && m[2] !== 'Z';
}

async function start(): Promise<ServerProcess> {
  const server = await startServer({ BERTH_DATA_DIR: dataDir, ADMIN_PASSWORD }, 120_000);
  servers.push(server);
  return server;
}

describe('a berth killed with SIGKILL', () => {
  it('leaves no MariaDB behind, and the next berth on the same data directory serves', { timeout: 300_000 }, async () => {
    const first = await start();
    firstMariadbd = Number(fs.readFileSync(path.join(dataDir, 'mariadb', 'mariadbd.pid'), 'utf8').trim());
    expect(mariadbdRunning(firstMariadbd)).toBe(true);

    await first.stop('SIGKILL');
    await expect.poll(() => mariadbdRunning(firstMariadbd), { timeout: 10_000, interval: 100 }).toBe(false);

    // The data directory is free and the socket usable again: a fresh server, not one adopted.
    const second = await start();
    expect(second.output()).not.toContain('reusing the MariaDB');
    expect((await fetch(`${second.url}/readyz`)).status).toBe(200);
    const login = await callJson(second.url, 'POST', '/v1/token', undefined, { username: 'admin', password: ADMIN_PASSWORD });
    expect(login.status).toBe(200);
    expect(await second.stop()).toBe(0);
  });
});
