// Runs the real `berth` command (the bin npm linked for the workspace, on plain Node) as a
// subprocess, with a home and XDG directories of its own: nothing touches the real user's
// configuration or sessions.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BERTH_BIN = path.resolve('node_modules/.bin/berth');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  env?: Record<string, string>;
  /** Sees stdout as it arrives (to tell output streamed live from output printed at the end). */
  onStdout?: (chunk: string) => void;
}

export interface CliUser {
  home: string;
  env: Record<string, string>;
  /** Runs `berth ARGS…` with `input` on stdin (stdin is closed either way). */
  run(args: string[], options?: RunOptions): Promise<CliResult>;
  /** The same, failing the test unless berth exits 0. */
  ok(args: string[], options?: RunOptions): Promise<string>;
  /** --json output, parsed. */
  json<T = any>(args: string[], options?: { input?: string }): Promise<T>;
  sessionsFile: string;
  remove(): void;
}

/** A person at a terminal-less shell: their own HOME, XDG dirs, and the server through Caddy. */
export function cliUser(server: { url: string; caPath?: string }): CliUser {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-home-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_STATE_HOME: path.join(home, '.local', 'state'),
    TMPDIR: process.env.TMPDIR ?? os.tmpdir(),
    BERTH_URL: server.url,
    ...(server.caPath && { BERTH_CA: server.caPath }),
  };
  const run: CliUser['run'] = (args, options = {}) =>
    new Promise((resolve, reject) => {
      const child = spawn(BERTH_BIN, args, { env: { ...env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
        options.onStdout?.(String(d));
      });
      child.stderr.on('data', (d) => (stderr += d));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(options.input ?? '');
    });
  // ok and json go through user.run, so a wrapper of run (test/helpers/cli-secrets.ts) sees every command.
  const user: CliUser = {
    home,
    env,
    run,
    async ok(args, options) {
      const r = await user.run(args, options);
      if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      return r.stdout;
    },
    json: async (args, options) => JSON.parse(await user.ok(['--json', ...args], options)),
    sessionsFile: path.join(home, '.local', 'state', 'berth', 'sessions.json'),
    remove: () => fs.rmSync(home, { recursive: true, force: true }),
  };
  return user;
}
