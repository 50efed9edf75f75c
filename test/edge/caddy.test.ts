// berth behind the project's Caddyfile, as users reach it: HTTPS from Caddy's local CA
// (trusted explicitly, never skipped), HTTP redirected, the client's own address seen by
// berth (sessions, login throttling), a large tar build context and a live build log
// passing through the proxy.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, PASSWORD, type Session, type TestApp } from '../helpers/app.js';
import { startCaddyFor, type Caddy } from '../helpers/caddy.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

const MAX_LOGINS_PER_ADDRESS = 5;

let t: TestApp;
let caddy: Caddy;
let admin: Session;
beforeAll(async () => {
  t = await createTestApp({
    BERTH_TRUST_PROXY: '127.0.0.1',
    BERTH_LOGIN_MAX_PER_IP: String(MAX_LOGINS_PER_ADDRESS),
    BERTH_IMAGE_CONTEXT_MAX_MB: '256',
  });
  admin = await adminSession(t);
  caddy = await startCaddyFor(t.app);
});
afterAll(async () => {
  await caddy?.stop();
  await t?.close();
});

/** A request through Caddy over HTTPS, from a loopback address of the test's choosing. */
function call(pathname: string, init: Parameters<typeof fetch>[1] & { from?: string } = {}) {
  const { from, ...rest } = init;
  return fetch(`${caddy.url}${pathname}`, { ...rest, dispatcher: caddy.dispatcher({ localAddress: from }) });
}

function login(username: string, password: string, from: string) {
  return call('/v1/token', { method: 'POST', from, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
}

async function waitForImage(id: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const image = (await (await call(`/v1/images/${id}`, { headers: admin.auth })).json()) as { status: string; error: string | null };
    if (image.status !== 'building' || Date.now() > deadline) return image;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('HTTPS through Caddy', () => {
  it('serves berth with a certificate from the local CA, which clients must trust to connect', async () => {
    const res = await call('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(res.headers.get('server')).toBe('Caddy');
    // Without the root, verification fails: nothing above got through by skipping it.
    const untrusted = await fetch(`${caddy.url}/healthz`).then(
      () => 'connected',
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    );
    expect(untrusted).toMatch(/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/);
  });

  it('redirects plain HTTP to HTTPS, keeping the path and query', async () => {
    const res = await fetch(`${caddy.httpUrl}/v1/pool?from=http`, { redirect: 'manual' });
    expect(res.status).toBe(308);
    expect(res.headers.get('location')).toBe(`${caddy.url}/v1/pool?from=http`);
  });
});

describe("the client's address, as berth sees it behind Caddy", () => {
  it("records the client's address on its session, whatever X-Forwarded-For the client sends", async () => {
    const created = await call('/v1/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'edge-ip', password: PASSWORD }),
    });
    expect(created.status).toBe(201);
    const res = await call('/v1/token', {
      method: 'POST',
      from: '127.0.0.5',
      // A client cannot choose its address: Caddy replaces what it claims with what it sees.
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.9' },
      body: JSON.stringify({ username: 'edge-ip', password: PASSWORD }),
    });
    expect(res.status).toBe(200);
    const { access_token } = (await res.json()) as { access_token: string };
    const sessions = (await (await call('/v1/sessions', { headers: { authorization: `Bearer ${access_token}` } })).json()) as {
      items: { ip_address: string; current: boolean }[];
    };
    expect(sessions.items.find((s) => s.current)?.ip_address).toBe('127.0.0.5');
  });

  it('throttles logins per client address, not per proxy', async () => {
    for (let i = 0; i < MAX_LOGINS_PER_ADDRESS; i++) expect((await login('edge-ip', 'wrong password', '127.0.0.6')).status).toBe(401);
    const throttled = await login('edge-ip', PASSWORD, '127.0.0.6');
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await throttled.json()) as { code: string }).code).toBe('too_many_attempts');
    // Every request reached berth from Caddy's 127.0.0.1; another client is still let in.
    expect((await login('edge-ip', PASSWORD, '127.0.0.7')).status).toBe(200);
  });
});

describe('image builds through Caddy', () => {
  it('passes a 64 MiB tar build context through intact', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-edge-context-'));
    try {
      const big = randomBytes(64 << 20); // random: neither side can shrink it by compression
      fs.writeFileSync(path.join(dir, 'big.bin'), big);
      // The build stops once it has printed the hash: turning it into a VM base would only cost time.
      fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${BASE_IMAGE}\nCOPY big.bin /tmp/big.bin\nRUN sha256sum /tmp/big.bin && exit 3\n`);
      const tarball = path.join(dir, 'context.tar');
      execFileSync('tar', ['-C', dir, '-cf', tarball, 'Dockerfile', 'big.bin']);
      const res = await call('/v1/images?name=edge-big', {
        method: 'POST',
        headers: { ...admin.auth, 'content-type': 'application/x-tar', 'content-length': String(fs.statSync(tarball).size) },
        body: fs.readFileSync(tarball),
      });
      expect(res.status, await res.clone().text()).toBe(202);
      const { id } = (await res.json()) as { id: string };
      const image = await waitForImage(id);
      const log = await (await call(`/v1/images/${id}/log`, { headers: admin.auth })).text();
      // The build saw exactly the bytes this test sent.
      expect(log).toContain(`${createHash('sha256').update(big).digest('hex')}  /tmp/big.bin`);
      expect(image, log).toMatchObject({ status: 'failed' });
      expect(image.error).toContain('non-zero code: 3');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('streams the build log through the proxy as it is written', async () => {
    // A nonce makes the step miss Docker's layer cache, so it really runs; it fails at the
    // end, which spares converting the image (nothing here needs a VM base).
    const nonce = randomBytes(6).toString('hex');
    const dockerfile = `FROM ${BASE_IMAGE}\nRUN echo run-${nonce} && echo first-line && sleep 5 && echo second-line && exit 3\n`;
    const res = await call('/v1/images', {
      method: 'POST',
      headers: { ...admin.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'edge-stream', dockerfile }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    // Accept-Encoding as browsers and curl --compressed send it: the log must not wait in a compressor.
    const log = await call(`/v1/images/${id}/log`, { headers: { ...admin.auth, 'accept-encoding': 'gzip, zstd' } });
    expect(log.headers.get('content-type')).toContain('text/plain');
    let text = '';
    let statusAtFirstLine = '';
    const decoder = new TextDecoder();
    for await (const chunk of log.body!) {
      text += decoder.decode(chunk, { stream: true });
      if (!statusAtFirstLine && /^first-line$/m.test(text)) {
        statusAtFirstLine = ((await (await call(`/v1/images/${id}`, { headers: admin.auth })).json()) as { status: string }).status;
      }
    }
    const image = await waitForImage(id);
    // The line reached the client while the build was still running (5 s before its end).
    expect(statusAtFirstLine, text).toBe('building');
    expect(text).toMatch(/^second-line$/m);
    expect(image).toMatchObject({ status: 'failed' });
  });
});

describe('security headers through Caddy', () => {
  it('answers with HSTS, nosniff, no framing, and no-store on everything that carries a token or a secret', async () => {
    const registered = await call('/v1/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'edge-headers', password: PASSWORD }),
    });
    expect(registered.status).toBe(201);
    const token = await login('edge-headers', PASSWORD, '127.0.0.8');
    expect(token.status).toBe(200);
    const { refresh_token } = (await token.json()) as { refresh_token: string };
    const refreshed = await call('/v1/token/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token }),
    });
    expect(refreshed.status).toBe(200);
    const answers = {
      registered,
      token,
      refreshed,
      whoami: await call('/v1/whoami', { headers: admin.auth }),
      problem: await call('/v1/whoami'),
      missing: await call('/v1/no-such-route'),
    };
    for (const [what, res] of Object.entries(answers)) {
      expect(res.headers.get('strict-transport-security'), what).toBe('max-age=31536000');
      expect(res.headers.get('cache-control'), what).toBe('no-store');
      expect(res.headers.get('x-content-type-options'), what).toBe('nosniff');
      expect(res.headers.get('x-frame-options'), what).toBe('DENY');
      expect(res.headers.get('content-security-policy'), what).toContain("frame-ancestors 'none'");
    }
    // An answer opened in a browser runs nothing.
    expect(answers.whoami.headers.get('content-security-policy')).toContain("default-src 'none'");
  });

  it('serves the interactive docs, which may run their own scripts but not be framed', async () => {
    const page = await call('/docs');
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/js\/scalar\.js/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('default-src');
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const script = await call('/docs/js/scalar.js');
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toContain('javascript');
  });
});
