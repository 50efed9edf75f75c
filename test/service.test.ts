import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createPrisma } from '../src/infra/database.js';
import { Keyring } from '../src/modules/identity/keyring.js';
import { PASSWORD, createTestApp, json, login, register, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('health and readiness', () => {
  it('GET /healthz and GET /readyz answer 200 with a live database', async () => {
    expect(json(await t.app.inject({ method: 'GET', url: '/healthz' }))).toEqual({ status: 'ok' });
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(json(ready)).toMatchObject({ status: 'ready', database: 'ok', capabilities: {} });
  });

  it('GET /readyz answers a 503 problem when the database cannot be reached', async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent', BERTH_DATA_DIR: t.dataDir });
    // A socket path where no server listens: a real, unreachable database.
    const prisma = createPrisma({ socketPath: '/nonexistent/berth.sock', user: 'root', database: 'nope' });
    const app = await buildApp(config, { prisma, keyring: t.keyring });
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(json(res).code).toBe('database_unavailable');
      expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await app.close();
      // The pool keeps retrying the dead socket until its acquire timeout; no need to wait.
      void prisma.$disconnect().catch(() => {});
    }
  });
});

describe('the OpenAPI document', () => {
  it('is OpenAPI 3.1 and describes every operation with operationId, tag, summary, responses and examples', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const spec = json(res);
    expect(spec.openapi).toBe('3.1.0');
    const ops = Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ id: `${method.toUpperCase()} ${path}`, op })),
    );
    const ids = new Set<string>();
    for (const { id, op } of ops) {
      expect(op.operationId, id).toBeTruthy();
      ids.add(op.operationId);
      expect(op.tags?.length, id).toBeGreaterThan(0);
      expect(op.summary, id).toBeTruthy();
      expect(Object.keys(op.responses ?? {}).length, id).toBeGreaterThan(0);
      // Every request body and every successful JSON response carries an example.
      if (op.requestBody) expect(JSON.stringify(op.requestBody), `${id} request example`).toMatch(/"examples?"/);
      const ok = Object.entries(op.responses).find(([code]) => code.startsWith('2') && code !== '204')?.[1] as any;
      if (ok?.content) {
        const schema = JSON.stringify(ok.content);
        const ref = /#\/components\/schemas\/(\w+)/.exec(schema)?.[1];
        const resolved = ref ? JSON.stringify(spec.components.schemas[ref]) : schema;
        expect(resolved, `${id} response example`).toMatch(/"examples?"/);
      }
    }
    expect(ids.size).toBe(ops.length); // operationIds are unique
    // Protected routes declare the bearer scheme.
    expect(spec.paths['/v1/whoami'].get.security).toEqual([{ bearerAuth: [] }]);
    expect(spec.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('serves interactive docs at /docs', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.body).toContain('/openapi.json');
  });
});

describe('problem responses', () => {
  it('answers unknown routes with a 404 problem', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/nothing-here?x=1' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(json(res)).toEqual({
      type: 'https://berth.dev/problems/route_not_found',
      title: 'Not Found',
      status: 404,
      detail: 'no route GET /v1/nothing-here',
      code: 'route_not_found',
      instance: '/v1/nothing-here',
    });
  });

  it('answers malformed JSON with 400 and a wrong media type with 415', async () => {
    const bad = await t.app.inject({ method: 'POST', url: '/v1/register', headers: { 'content-type': 'application/json' }, payload: '{"username":' });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).code).toBe('malformed_body');
    const xml = await t.app.inject({ method: 'POST', url: '/v1/register', headers: { 'content-type': 'application/xml' }, payload: '<x/>' });
    expect(xml.statusCode).toBe(415);
    expect(json(xml).code).toBe('unsupported_media_type');
  });

  it('hides the message of an unexpected error behind a generic 500', async () => {
    // A route that fails the way a bug would; nothing a client sends can make berth do this.
    const app = await buildApp(t.config, { prisma: t.prisma, keyring: t.keyring });
    app.get('/boom', async () => {
      throw new Error('secret internals: password=hunter2');
    });
    const res = await app.inject({ method: 'GET', url: '/boom' });
    expect(res.statusCode).toBe(500);
    expect(json(res)).toMatchObject({ code: 'internal_error', status: 500 });
    expect(res.body).not.toContain('hunter2');
    await app.close();
  });

  it('echoes a request id, generating one when the client sends none', async () => {
    const mine = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trace-123' } });
    expect(mine.headers['x-request-id']).toBe('trace-123');
    const generated = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('logging', () => {
  it('logs requests with their id but never passwords, tokens or authorization headers', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const config = loadConfig({ LOG_LEVEL: 'trace', BERTH_DATA_DIR: t.dataDir, BERTH_LOGIN_MAX_PER_IP: '1000' });
    const app = await buildApp(config, { prisma: t.prisma, keyring: Keyring.open(t.config.jwt.keysDir), logStream: stream });
    try {
      await register(app, 'logged', PASSWORD);
      const s = await login(app, 'logged');
      await app.inject({ method: 'POST', url: '/v1/token', headers: { authorization: `Basic ${Buffer.from(`logged:${PASSWORD}`).toString('base64')}` } });
      await app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: s.refreshToken } });
      await app.inject({ method: 'GET', url: '/v1/whoami', headers: { ...s.auth, 'x-request-id': 'req-for-log-test' } });
      const log = lines.join('');
      expect(log).toContain('req-for-log-test');
      expect(log).toContain('/v1/whoami');
      for (const secret of [PASSWORD, s.accessToken, s.refreshToken, Buffer.from(`logged:${PASSWORD}`).toString('base64')]) {
        expect(log).not.toContain(secret);
      }
    } finally {
      await app.close();
    }
  });
});
