// The OpenAPI document and the server agree (issue 18, items 10-12): what an outside
// contract check found. Every answer below is also checked against the document by the
// test helpers (test/helpers/contract.ts): an undocumented 413, 414 or 415, a header sent
// but not documented, fails the test that got it. Here: the requests the server refuses,
// the document refuses too, and the document lists what the server takes and sends.
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { adminSession, createTestApp, json, PASSWORD, userSession, type Session, type TestApp } from '../helpers/app.js';
import { checkAnswersAgainstDocument } from '../helpers/contract.js';

let t: TestApp;
let admin: Session;
let user: Session;
let doc: any;
let ajv: Ajv2020;
beforeAll(async () => {
  // Three logins per address: the tests use addresses of their own.
  t = await createTestApp({ BERTH_LOGIN_MAX_PER_IP: '3' });
  admin = await adminSession(t);
  user = await userSession(t, 'alice');
  doc = json(await t.app.inject({ method: 'GET', url: '/openapi.json' }));
  ajv = new Ajv2020({ strict: false, validateSchema: false });
  addFormats.default(ajv);
  ajv.addSchema(doc, 'doc');
});
afterAll(() => t.close());

/** Whether the document takes `body` as the JSON request body of `method path`. */
function documentTakes(method: string, path: string, body: unknown): boolean {
  const pointer = ['paths', path, method, 'requestBody', 'content', 'application/json', 'schema']
    .map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1'))
    .join('/');
  return ajv.validate({ $ref: `doc#/${pointer}` }, body) as boolean;
}

const machine = { name: 'box', host: '127.0.0.1', username: 'root' };

describe('what the server refuses, the document refuses', () => {
  const cases: [string, string, string, () => Session, unknown][] = [
    ['a port as a string', 'post', '/v1/machines', () => admin, { ...machine, port: '2', password: 'pw' }],
    ['both credentials', 'post', '/v1/machines', () => admin, { ...machine, password: 'pw', private_key: 'key' }],
    ['no credential', 'post', '/v1/machines', () => admin, machine],
    ['a password past 8000 bytes', 'post', '/v1/machines', () => admin, { ...machine, password: 'x'.repeat(8001) }],
    ['count and machines', 'post', '/v1/reservations', () => user, { count: 1, machines: ['box'] }],
    ['a machine named twice', 'post', '/v1/reservations', () => user, { machines: ['box', 'box'] }],
  ];
  for (const [what, method, path, session, body] of cases) {
    it(`${method.toUpperCase()} ${path} with ${what}`, async () => {
      const res = await t.app.inject({ method: method.toUpperCase() as 'POST', url: path, headers: session().auth, payload: body as object });
      expect(res.statusCode, res.body).toBe(400);
      expect(json(res).code).toBe('validation_failed');
      expect(documentTakes(method, path, body), `the document takes ${what}`).toBe(false);
    });
  }

  it('an empty PATCH of a machine or a user, and both credentials in one', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/machines', headers: admin.auth, payload: { ...machine, password: 'pw' } });
    for (const [path, url, body] of [
      ['/v1/machines/{name}', '/v1/machines/box', {}],
      ['/v1/machines/{name}', '/v1/machines/box', { password: 'pw', private_key: 'key' }],
      ['/v1/users/{id}', `/v1/users/${user.userId}`, {}],
    ] as const) {
      const res = await t.app.inject({ method: 'PATCH', url, headers: admin.auth, payload: body });
      expect(res.statusCode, `${url} ${JSON.stringify(body)}`).toBe(400);
      expect(documentTakes('patch', path, body), `the document takes ${JSON.stringify(body)} on ${path}`).toBe(false);
    }
  });

  it('a tag filter that is not key:value', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/machines?tag=novalue', headers: user.auth });
    expect(res.statusCode).toBe(400);
    const tag = doc.paths['/v1/machines'].get.parameters.find((p: { name: string }) => p.name === 'tag');
    expect(ajv.validate(tag.schema, 'novalue')).toBe(false);
    expect(ajv.validate(tag.schema, ['gpu:a100', 'novalue'])).toBe(false);
    expect(ajv.validate(tag.schema, ['gpu:a100', 'rack:r2'])).toBe(true);
  });
});

describe('what the server answers, the document lists', () => {
  it('413 on every route that reads a body', async () => {
    const huge = { username: 'x'.repeat(2 * 1024 * 1024) };
    for (const [url, session] of [
      ['/v1/register', null],
      ['/v1/token', null],
      ['/v1/reservations', user],
      ['/v1/users', admin],
      ['/v1/machines', admin],
    ] as const) {
      const res = await t.app.inject({ method: 'POST', url, headers: session?.auth ?? {}, payload: huge, remoteAddress: '127.0.0.13' });
      expect(res.statusCode, url).toBe(413);
      expect(json(res).code).toBe('payload_too_large');
      expect(doc.paths[url].post.responses['413'], url).toBeDefined();
    }
  });

  it('415 for a body of a type the route does not take', async () => {
    for (const [url, session] of [
      ['/v1/token', null],
      ['/v1/users', admin],
      ['/v1/reservations', user],
    ] as const) {
      const res = await t.app.inject({
        method: 'POST',
        url,
        headers: { ...session?.auth, 'content-type': 'text/csv' },
        payload: 'a,b',
        remoteAddress: '127.0.0.15',
      });
      expect(res.statusCode, url).toBe(415);
      expect(json(res).code).toBe('unsupported_media_type');
      expect(doc.paths[url].post.responses['415'], url).toBeDefined();
    }
  });

  it('414 for a path parameter longer than berth takes', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/machines/${'m'.repeat(200)}`, headers: user.auth });
    expect(res.statusCode).toBe(414);
    expect(json(res).code).toBe('uri_too_long');
    expect(doc.paths['/v1/machines/{name}'].get.responses['414']).toBeDefined();
  });

  it('YAML on the machine import', async () => {
    expect(Object.keys(doc.paths['/v1/machines/import'].post.requestBody.content)).toEqual(
      expect.arrayContaining(['application/json', 'application/yaml']),
    );
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/machines/import',
      headers: { ...admin.auth, 'content-type': 'application/yaml' },
      payload: 'machines:\n  - {name: yaml-1, host: 127.0.0.1, port: 2201, user: root, password: pw}\n',
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(json(res)).toMatchObject({ created: 1, errors: [] });
  });

  it('the headers that go with answers: Retry-After, rate limits, WWW-Authenticate, Idempotent-Replayed', async () => {
    const token = doc.paths['/v1/token'].post.responses;
    expect(Object.keys(token['200'].headers)).toEqual(expect.arrayContaining(['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']));
    expect(token['429'].headers['Retry-After']).toMatchObject({ required: true });
    expect(token['401'].headers['WWW-Authenticate']).toMatchObject({ required: true });
    expect(doc.paths['/v1/whoami'].get.responses['503'].headers['Retry-After']).toBeDefined();
    expect(doc.paths['/v1/reservations'].post.responses['201'].headers['Idempotent-Replayed']).toBeDefined();
    // The answers themselves are checked against these by the helpers.
    let last;
    for (let i = 0; i < 4; i++) {
      last = await t.app.inject({ method: 'POST', url: '/v1/token', payload: { username: 'alice', password: PASSWORD }, remoteAddress: '127.0.0.9' });
    }
    expect(last!.statusCode).toBe(429);
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
  });
});

describe("the suite's check of every answer", () => {
  it('catches an undocumented status, a body the document does not allow, and an undocumented header', async () => {
    const found: string[] = [];
    // The check sees what a route would answer if it broke the document: here /healthz,
    // changed on its way out by a hook ahead of the check.
    const app = await buildApp(t.config, {
      prisma: t.prisma,
      keyring: t.keyring,
      observe: (instance) => {
        instance.addHook('onSend', async (request, reply, payload) => {
          const broken = request.headers['x-break'];
          if (broken === 'status') reply.code(418);
          if (broken === 'header') reply.header('retry-after', '5');
          return broken === 'body' ? '{"status":"fine"}' : payload;
        });
        checkAnswersAgainstDocument(found)(instance);
      },
    });
    try {
      await app.ready();
      expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      expect(found).toEqual([]);
      for (const broken of ['status', 'body', 'header']) await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-break': broken } });
      expect(found).toEqual([
        expect.stringContaining('status 418 is not documented'),
        expect.stringContaining('the body does not match the documented schema'),
        expect.stringContaining('header retry-after is sent but not documented'),
      ]);
    } finally {
      await app.close();
    }
  });
});
