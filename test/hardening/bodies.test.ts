// No body is read before the caller is known to be allowed to send it, every body is
// bounded, and a hostile or slow one costs berth nothing it cannot afford: the process
// keeps answering everyone else while it arrives.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

let t: TestApp;
let admin: Session;
let user: Session;
let base: string;

beforeAll(async () => {
  t = await createTestApp({ BERTH_IDLE_TIMEOUT_SECONDS: '2', BERTH_REQUEST_TIMEOUT_SECONDS: '4' });
  admin = await adminSession(t);
  user = await userSession(t, 'alice');
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(() => t.close());

const spooled = () => fs.readdirSync(os.tmpdir()).filter((f) => /^berth-context-.*\.tar$/.test(f));

/** A 15,000-key YAML mapping (~140 KB): seconds to minutes of event loop for the `yaml` library's duplicate check. */
function manyKeys(n = 15_000): string {
  let doc = 'machines:\n  - name: many-keys\n    host: 127.0.0.1\n    user: root\n    password: secret1!\n';
  for (let i = 0; i < n; i++) doc += `    k${i}: v\n`;
  return doc;
}

/** The worst /healthz latency seen while `work` runs: the event loop's freedom, as a client sees it. */
async function healthLatencyDuring(work: Promise<unknown>): Promise<number> {
  let done = false;
  // Settled either way: a failed request is reported by the `await work` below, not as an unhandled rejection.
  void work.then(
    () => (done = true),
    () => (done = true),
  );
  let worst = 0;
  while (!done) {
    const started = performance.now();
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    worst = Math.max(worst, performance.now() - started);
    await new Promise((r) => setTimeout(r, 20));
  }
  await work;
  return worst;
}

interface RawResult {
  status: number | null;
  type?: string;
  /** The connection was closed by berth before an answer. */
  closed: boolean;
  ms: number;
}

/**
 * Sends headers announcing `length` bytes, then `chunks` with `gapMs` between them: a slow
 * client (or one that stops) as the server sees it.
 */
function rawUpload(opts: { method: string; path: string; headers: Record<string, string>; length: number; chunks: Buffer[]; gapMs: number }): Promise<RawResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(`${base}${opts.path}`, {
      method: opts.method,
      headers: { ...opts.headers, 'content-length': String(opts.length) },
    });
    let finished = false;
    const finish = (r: Omit<RawResult, 'ms'>) => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      req.destroy();
      resolve({ ...r, ms: performance.now() - started });
    };
    req.on('response', (res) => {
      res.resume();
      finish({ status: res.statusCode ?? null, type: res.headers['content-type'], closed: false });
    });
    req.on('error', () => finish({ status: null, closed: true }));
    req.flushHeaders();
    let i = 0;
    const timer = setInterval(() => {
      if (i < opts.chunks.length) req.write(opts.chunks[i++]);
    }, opts.gapMs);
  });
}

describe('guards before bodies', () => {
  it('answers an anonymous or non-admin YAML import before reading it', async () => {
    const body = manyKeys();
    for (const auth of [{}, user.auth]) {
      const res = await fetch(`${base}/v1/machines/import`, { method: 'POST', headers: { ...auth, 'content-type': 'application/yaml' }, body });
      expect(res.status).toBe(auth === user.auth ? 403 : 401);
    }
  });

  it('parses an admin’s hostile YAML without stalling anyone else', async () => {
    const post = fetch(`${base}/v1/machines/import`, { method: 'POST', headers: { ...admin.auth, 'content-type': 'application/yaml' }, body: manyKeys() });
    const worst = await healthLatencyDuring(post);
    // Liveness, not speed: on the event loop this document stalled berth for 3 to 35 s.
    expect(worst).toBeLessThan(1000);
    const res = await post;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ created: 1, errors: [] });
  });

  it('bounds YAML: size, nodes, aliases, duplicate keys, entries', async () => {
    const importYaml = async (body: string) => {
      const res = await t.app.inject({ method: 'POST', url: '/v1/machines/import', headers: { ...admin.auth, 'content-type': 'application/yaml' }, payload: body });
      return { status: res.statusCode, body: json(res) };
    };
    expect(await importYaml(`machines:\n${'  - x\n'.repeat(60_000)}`)).toMatchObject({ status: 413, body: { code: 'payload_too_large' } });
    expect(await importYaml(`machines:\n${'  - [a, b, c, d, e, f, g, h, i, j, k, l]\n'.repeat(5000)}`)).toMatchObject({
      status: 400,
      body: { code: 'yaml_too_complex' },
    });
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (const [i, name] of ['b', 'c', 'd', 'e', 'f', 'g'].entries()) {
      const prev = 'abcdefg'[i]!;
      laughs.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(', ')}]`);
    }
    expect(await importYaml(`${laughs.join('\n')}\nmachines: [*g]\n`)).toMatchObject({ status: 400, body: { code: 'yaml_too_complex' } });
    expect(await importYaml('machines:\n  - name: a\n    name: b\n')).toMatchObject({ status: 400, body: { code: 'invalid_yaml' } });
    const entries = Array.from({ length: 1001 }, (_, i) => `  - {name: m${i}, host: h, user: root, password: x}`).join('\n');
    expect(await importYaml(`machines:\n${entries}\n`)).toMatchObject({ status: 400, body: { code: 'validation_failed' } });
  });

  it('never spools a tar body for anyone but an admin, nor on any other images route', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024);
    const attempts: [string, string, Record<string, string>, number][] = [
      ['POST', '/v1/images?name=anon', {}, 401],
      ['POST', '/v1/images?name=user', user.auth, 403],
      ['DELETE', `/v1/images/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, {}, 401],
      ['DELETE', `/v1/images/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, admin.auth, 415],
      ['PUT', `/v1/images/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}/pool`, admin.auth, 415],
    ];
    for (const [method, path, auth, status] of attempts) {
      const res = await fetch(`${base}${path}`, { method, headers: { ...auth, 'content-type': 'application/x-tar' }, body: big });
      expect(res.status, `${method} ${path}`).toBe(status);
      expect(spooled()).toEqual([]);
    }
  });
});

describe('slow bodies', () => {
  it('closes an upload that stops sending, and keeps nothing of it', async () => {
    const r = await rawUpload({
      method: 'POST',
      path: '/v1/images?name=stalled',
      headers: { ...admin.auth, 'content-type': 'application/x-tar' },
      length: 10 * 1024 * 1024,
      chunks: [Buffer.alloc(64 * 1024)],
      gapMs: 10,
    });
    // BERTH_IDLE_TIMEOUT_SECONDS=2: the connection goes soon after the body stops.
    expect(r.status === 408 || r.closed).toBe(true);
    expect(r.ms).toBeLessThan(4500);
    await new Promise((res) => setTimeout(res, 200));
    expect(spooled()).toEqual([]);
  });

  it('ends an upload that trickles on for longer than the request may take', async () => {
    const r = await rawUpload({
      method: 'POST',
      path: '/v1/images?name=trickle',
      headers: { ...admin.auth, 'content-type': 'application/x-tar' },
      length: 10 * 1024 * 1024,
      chunks: Array.from({ length: 100 }, () => Buffer.alloc(100)),
      gapMs: 500,
    });
    // BERTH_REQUEST_TIMEOUT_SECONDS=4: never idle for 2 s, yet cut at the request limit,
    // with a problem document saying so.
    expect(r).toMatchObject({ status: 408, type: 'application/problem+json' });
    expect(r.ms).toBeLessThan(7000);
    await new Promise((res) => setTimeout(res, 200));
    expect(spooled()).toEqual([]);
  });

  it('answers a request berth works on for longer than the idle timeout: the quiet is berth’s, not the client’s', async () => {
    // The admin's change waits on a row lock the test holds. The client sent everything;
    // BERTH_IDLE_TIMEOUT_SECONDS=2 cut this connection without an answer (a YAML import
    // parsing on a busy machine met the same: "other side closed").
    let unlock!: () => void;
    const unlocked = new Promise<void>((resolve) => (unlock = resolve));
    let locked!: () => void;
    const lockHeld = new Promise<void>((resolve) => (locked = resolve));
    const holder = t.prisma.$transaction(
      async (tx) => {
        await tx.$queryRaw`SELECT id FROM users WHERE id = ${user.userId} FOR UPDATE`;
        locked();
        await unlocked;
      },
      { maxWait: 30_000, timeout: 120_000 },
    );
    await lockHeld;
    const patch = fetch(`${base}/v1/users/${user.userId}`, {
      method: 'PATCH',
      headers: { ...admin.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'alice@example.com' }),
    });
    try {
      // berth has the whole request once it waits for the row: from then on it alone is working.
      await vi.waitFor(
        async () => {
          const [row] = await t.prisma.$queryRaw<{ waiting: bigint }[]>`SELECT COUNT(*) AS waiting FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'`;
          if (Number(row!.waiting) !== 1) throw new Error('the change is not waiting for the row yet');
        },
        { timeout: 60_000, interval: 100 },
      );
      await sleep(3000); // longer than the idle timeout
    } finally {
      unlock();
      await holder;
    }
    const res = await patch;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: user.userId, email: 'alice@example.com' });
  });

  it('answers a POST /v1/images without a body with a problem, not a 500', async () => {
    for (const headers of [admin.auth, { ...admin.auth, 'content-type': 'application/json' }, { ...admin.auth, 'content-type': 'application/x-tar' }]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/images', headers });
      expect([400, 415], res.body).toContain(res.statusCode);
    }
  });

  it('keeps following a build log through a step that prints nothing for longer than the idle timeout', async () => {
    const res = await fetch(`${base}/v1/images`, {
      method: 'POST',
      headers: { ...admin.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'quiet-step', dockerfile: `FROM ${BASE_IMAGE}\nRUN sleep 4 && echo finally-done\n` }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const log = await fetch(`${base}/v1/images/${id}/log`, { headers: admin.auth });
    expect(log.status).toBe(200);
    // BERTH_IDLE_TIMEOUT_SECONDS=2: the follower is not cut during the quiet 4 s.
    const text = await log.text();
    expect(text).toContain('finally-done');
    // berth's own last words: the base made (or shared), or why the image failed.
    expect(text).toMatch(/berth: (.* ext4 base in \d+ ms|.*its base is shared|the image failed)/);
  }, 120_000);
});
