// The one thing berth keeps between runs to stay logged in: per server, the refresh token
// of the session, in a 0600 file in the XDG state directory. Access tokens live only in
// the memory of one run.
//
// Refresh tokens are single-use and berth revokes a whole session when one is presented
// twice, so two runs of `berth` at once must never refresh with the same token: every
// read-refresh-write happens under a lock on the file, and a run always refreshes with
// the token in the file (the newest), never with one it remembers.
import fs from 'node:fs';
import path from 'node:path';
import { lock } from 'proper-lockfile';
import { readJsonFile, writePrivateJsonFile } from './files.js';
import { sessionsFile } from './paths.js';

export interface StoredSession {
  username: string;
  refresh_token: string;
  session_id: string;
  saved_at: string;
}

interface SessionsFile {
  servers: Record<string, StoredSession>;
}

function readAll(): SessionsFile {
  const value = readJsonFile(sessionsFile()) as Partial<SessionsFile> | undefined;
  return { servers: value && typeof value.servers === 'object' && value.servers !== null ? value.servers : {} };
}

function writeAll(all: SessionsFile): void {
  const file = sessionsFile();
  if (Object.keys(all.servers).length === 0) fs.rmSync(file, { force: true });
  else writePrivateJsonFile(file, all);
}

/** Runs `work` holding the lock of the sessions file (waiting up to ~10 s for another run of berth). */
export async function withSessionsLock<T>(work: () => Promise<T>): Promise<T> {
  const file = sessionsFile();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const release = await lock(file, {
    realpath: false,
    // A run that died holding the lock leaves a directory whose mtime stops moving.
    stale: 15_000,
    retries: { retries: 100, minTimeout: 20, maxTimeout: 200, factor: 1.5 },
  });
  try {
    return await work();
  } finally {
    await release().catch(() => {});
  }
}

/** The stored session of one server (callers that change it hold the lock). */
export function sessionStore(serverUrl: string) {
  return {
    read(): StoredSession | undefined {
      return readAll().servers[serverUrl];
    },
    save(session: Omit<StoredSession, 'saved_at'>): void {
      const all = readAll();
      all.servers[serverUrl] = { ...session, saved_at: new Date().toISOString() };
      writeAll(all);
    },
    remove(): void {
      const all = readAll();
      if (!(serverUrl in all.servers)) return;
      delete all.servers[serverUrl];
      writeAll(all);
    },
  };
}

export type SessionStore = ReturnType<typeof sessionStore>;
