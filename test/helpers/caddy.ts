// Debian's Caddy in front of a berth, with the project's own Caddyfile: a wrapper file
// imports it and only adds what a test needs (its own HTTP port, no admin endpoint, no
// change to the system's trust store, its own storage so the local CA's root is at a known
// path). Clients trust that root explicitly; nothing here turns verification off.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { Agent } from 'undici';
import { freePort } from '../../src/infra/ports.js';

export const CADDYFILE = path.resolve('Caddyfile');

export interface Caddy {
  /** https://localhost:PORT */
  url: string;
  /** http://localhost:PORT: Caddy's redirects to HTTPS */
  httpUrl: string;
  httpsPort: number;
  /** The local CA's root certificate (PEM) and its path. */
  rootPem: string;
  rootPath: string;
  /** A fetch dispatcher that trusts the root (and optionally connects from another loopback address). */
  dispatcher(opts?: { localAddress?: string }): Agent;
  output(): string;
  stop(): Promise<void>;
}

async function waitForTls(port: number, ca: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Caddy's HTTPS did not answer on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts Caddy proxying to `upstream` (host:port); another port is tried if one was taken meanwhile. */
export async function startCaddy(upstream: string): Promise<Caddy> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(upstream);
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
}

/** Makes a test's berth listen on a free loopback port, with Caddy in front of it. */
export async function startCaddyFor(app: FastifyInstance): Promise<Caddy> {
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return startCaddy(new URL(address).host);
}

async function launch(upstream: string): Promise<Caddy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-caddy-'));
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const wrapper = path.join(dir, 'Caddyfile');
  // The HTTPS port travels in the site address (BERTH_DOMAIN): Caddy's HTTP→HTTPS redirect
  // then names that port, as it names none for a site on 443.
  fs.writeFileSync(wrapper, `{\n\thttp_port ${httpPort}\n\tadmin off\n\tskip_install_trust\n}\nimport ${CADDYFILE}\n`);
  const child: ChildProcess = spawn('caddy', ['run', '--config', wrapper, '--adapter', 'caddyfile'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dir,
      XDG_DATA_HOME: path.join(dir, 'data'),
      XDG_CONFIG_HOME: path.join(dir, 'config'),
      BERTH_DOMAIN: `localhost:${httpsPort}`,
      BERTH_UPSTREAM: upstream,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const rootPath = path.join(dir, 'data', 'caddy', 'pki', 'authorities', 'local', 'root.crt');
  try {
    const deadline = Date.now() + 15_000;
    while (!fs.existsSync(rootPath)) {
      if (child.exitCode !== null) throw new Error(`caddy exited with ${child.exitCode}:\n${out}`);
      if (Date.now() > deadline) throw new Error(`caddy made no local CA within 15 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 50)); // the file is written whole, but give the write a moment
    const rootPem = fs.readFileSync(rootPath, 'utf8');
    await waitForTls(httpsPort, rootPem, 15_000);
    return {
      url: `https://localhost:${httpsPort}`,
      httpUrl: `http://localhost:${httpPort}`,
      httpsPort,
      rootPem,
      rootPath,
      dispatcher: ({ localAddress } = {}) => new Agent({ connect: { ca: rootPem }, ...(localAddress && { localAddress }) }),
      output: () => out,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
