// The process as `npm start` runs it: without DATABASE_URL it runs its own MariaDB in the
// data directory, migrates, bootstraps an admin, serves, and on SIGTERM stops it all.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createEmptyDatabase, rootQuery } from './helpers/db.js';
import { startServer } from './helpers/server-process.js';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-server-'));
// The embedded MariaDB may still be writing its last files as berth's exit is seen (ENOTEMPTY once, in a loaded suite).
afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }));

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

function mariadbRunningIn(dir: string): boolean {
  try {
    return execFileSync('pgrep', ['-f', '--', `--datadir=${dir}`]).toString().trim().length > 0;
  } catch {
    return false;
  }
}

// Filled by the first test and used by the later ones (they share the data directory).
let adminPassword = '';
let accessToken = '';

describe('berth with the embedded database', () => {
  it('starts its own MariaDB, migrates, creates an admin with a generated password and serves', async () => {
    const server = await startServer({ BERTH_DATA_DIR: dataDir });
    try {
      const out = server.output();
      adminPassword = /created admin "admin" with password: (\S+)/.exec(out)?.[1] ?? '';
      expect(adminPassword.length).toBeGreaterThanOrEqual(20);
      const file = path.join(dataDir, 'admin-password');
      expect(fs.readFileSync(file, 'utf8').trim()).toBe(adminPassword);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(mariadbRunningIn(path.join(dataDir, 'mariadb', 'data'))).toBe(true);
      // The server's socket and data live in the data directory, closed to other users.
      expect(fs.statSync(path.join(dataDir, 'mariadb')).mode & 0o777).toBe(0o700);

      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      const token = await post(`${server.url}/v1/token`, { username: 'admin', password: adminPassword });
      expect(token.status).toBe(200);
      accessToken = ((await token.json()) as { access_token: string }).access_token;
      const users = await fetch(`${server.url}/v1/users`, { headers: { authorization: `Bearer ${accessToken}` } });
      expect(users.status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(mariadbRunningIn(path.join(dataDir, 'mariadb', 'data'))).toBe(false);
  });

  it('restarts on the same data directory: same admin, same keys, no new password', async () => {
    const server = await startServer({ BERTH_DATA_DIR: dataDir });
    try {
      expect(server.output()).not.toContain('created admin');
      // An access token from before the restart still verifies: the signing keys persisted.
      const verify = await fetch(`${server.url}/v1/token/verify`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}` } });
      expect(verify.status).toBe(200);
      expect((await post(`${server.url}/v1/token`, { username: 'admin', password: adminPassword })).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});

describe('operator commands', () => {
  it('keys:rotate adds a key; after SIGHUP the running server signs with it and still honours old tokens', async () => {
    const server = await startServer({ BERTH_DATA_DIR: dataDir });
    try {
      const before = await post(`${server.url}/v1/token`, { username: 'admin', password: adminPassword });
      const oldToken = ((await before.json()) as { access_token: string }).access_token;
      const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()).kid as string;

      const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'rotate-keys'], {
        env: { PATH: process.env.PATH ?? '', BERTH_DATA_DIR: dataDir },
      }).toString();
      const newKid = /new signing key (\S+)/.exec(out)?.[1];
      expect(newKid).toBeTruthy();
      expect(newKid).not.toBe(kidOf(oldToken));

      server.child.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 300));
      const after = await post(`${server.url}/v1/token`, { username: 'admin', password: adminPassword });
      const newToken = ((await after.json()) as { access_token: string }).access_token;
      expect(kidOf(newToken)).toBe(newKid);
      for (const token of [oldToken, newToken]) {
        const res = await fetch(`${server.url}/v1/token/verify`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
        expect(res.status).toBe(200);
      }
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('migrate applies the migrations to DATABASE_URL without serving', async () => {
    const db = await createEmptyDatabase('cli');
    try {
      execFileSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'migrate'], {
        env: {
          PATH: process.env.PATH ?? '',
          BERTH_DATA_DIR: dataDir,
          DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(db.target.socketPath!)}`,
        },
      });
      const tables = await rootQuery<{ t: string }[]>('SELECT table_name AS t FROM information_schema.tables WHERE table_schema = ?', [db.target.database]);
      expect(tables.map((r) => r.t)).toEqual(expect.arrayContaining(['_prisma_migrations', 'users', 'sessions', 'refresh_tokens']));
    } finally {
      await db.drop();
    }
  });
});

describe('berth with DATABASE_URL', () => {
  it('uses that server and the admin password it was given', async () => {
    const db = await createEmptyDatabase('url');
    const otherDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-server-url-'));
    const socket = db.target.socketPath!;
    const server = await startServer({
      BERTH_DATA_DIR: otherDataDir,
      DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(socket)}`,
      ADMIN_USERNAME: 'chief',
      ADMIN_PASSWORD: 'a configured admin passphrase',
    });
    try {
      expect(server.output()).toContain('created admin "chief" with the password from ADMIN_PASSWORD');
      expect(server.output()).not.toContain('a configured admin passphrase');
      expect(fs.existsSync(path.join(otherDataDir, 'mariadb'))).toBe(false);
      const rows = await rootQuery<{ username: string }[]>("SELECT username FROM users WHERE role = 'admin'", [], db.target.database);
      expect(rows.map((r) => r.username)).toEqual(['chief']);
      expect((await post(`${server.url}/v1/token`, { username: 'chief', password: 'a configured admin passphrase' })).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
      await db.drop();
      fs.rmSync(otherDataDir, { recursive: true, force: true });
    }
  });

  it('refuses to start with invalid configuration, naming the variable', async () => {
    await expect(startServer({ BERTH_DATA_DIR: dataDir, BERTH_REGISTRATION: 'sometimes' }, 20_000)).rejects.toThrow(
      /exited with 78[\s\S]*BERTH_REGISTRATION/,
    );
  });
});
