// The audit, kept reproducible: every operation of /openapi.json gets malformed requests
// (wrong types, sizes, unicode, nulls, extra fields, bad JSON, wrong content types, bad
// cursors, odd path parameters) as anonymous, a user and an admin. No answer may be a 5xx,
// none may take more than a few seconds, and each refusal is a problem document.
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, login, userSession, type Session, type TestApp } from '../helpers/app.js';

type Actor = 'anonymous' | 'user' | 'admin';
type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  examples?: unknown[];
  $ref?: string;
  anyOf?: Schema[];
};
interface Operation {
  method: string;
  path: string;
  parameters?: { name: string; in: string; schema?: Schema }[];
  requestBody?: { content: Record<string, { schema: Schema }> };
}

let t: TestApp;
let sessions: Record<Exclude<Actor, 'anonymous'>, Session>;
let operations: Operation[];
let components: Record<string, Schema>;

beforeAll(async () => {
  t = await createTestApp();
  sessions = { user: await userSession(t, 'fuzzy'), admin: await adminSession(t) };
  const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
    paths: Record<string, Record<string, Omit<Operation, 'method' | 'path'>>>;
    components: { schemas: Record<string, Schema> };
  };
  components = doc.components.schemas;
  operations = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ method: method.toUpperCase(), path, ...op })),
  );
});
afterAll(() => t.close());

const LONG = 'x'.repeat(70_000);
/** Values of every wrong kind, for any field. */
const ODD_VALUES: unknown[] = [
  null, true, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, '', ' ', LONG, '😀'.repeat(300), 'a\u0000b', '\u202e\u200b', '../../etc/passwd',
  '%00', '<script>', "'; DROP TABLE users; --", [], [null], Array(5000).fill('x'), {}, { $gt: '' }, { __proto__: { admin: true } },
  nested(200),
];
/** Path parameters nobody would send, each already URL-encoded where it must be. */
const ODD_PARAMS = ['0', '-1', 'null', 'undefined', '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'x'.repeat(2000),
  encodeURIComponent('😀'), encodeURIComponent('../..'), '%00', encodeURIComponent("' OR 1=1 --"), 'a.b', 'A'];
const ODD_QUERIES = ['limit=abc', 'limit=-1', 'limit=0', 'limit=99999999999999999999', 'limit=1.5', 'cursor=%00', `cursor=${'Z'.repeat(600)}`,
  'cursor=bm90IGEgY3Vyc29y', `cursor=${Buffer.from('2026-13-45T99:99:99Z|x').toString('base64url')}`, 'status=nope', 'all=maybe',
  'tag=nocolon', `tag=${'k'.repeat(100)}:v`, 'tag=a:b&tag=a:b&tag=a:b', 'type=%F0%9F%98%80', 'q=%25', 'name=BAD%20NAME', 'user=%00', 'image=', 'state=gone', 'limit[]=1'];
const BAD_BODIES: { type: string; body: string }[] = [
  { type: 'application/json', body: '{' },
  { type: 'application/json', body: 'null' },
  { type: 'application/json', body: '[]' },
  { type: 'application/json', body: '"a string"' },
  { type: 'application/json', body: '12' },
  { type: 'application/json', body: '{"__proto__":{"role":"admin"}}' },
  { type: 'application/json', body: `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}` },
  { type: 'application/json; charset=latin1', body: '{}' },
  { type: 'text/plain', body: 'hello' },
  { type: 'application/xml', body: '<a/>' },
  { type: 'application/x-www-form-urlencoded', body: 'a=b' },
  { type: 'multipart/form-data; boundary=x', body: '--x\r\n\r\n--x--' },
  { type: 'application/yaml', body: 'a: [1, 2' },
  { type: 'application/x-tar', body: 'not a tar' },
  { type: '', body: '{}' },
];

function nested(depth: number): unknown {
  let v: unknown = 'deep';
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

const resolve = (s: Schema | undefined): Schema | undefined => (s?.$ref ? components[s.$ref.split('/').pop()!] : s);

/** A request body the schema's example gives, pointed at nothing outside this machine. */
function exampleBody(op: Operation): Record<string, unknown> {
  const json = op.requestBody?.content['application/json'];
  const schema = resolve(json?.schema);
  const example = schema?.examples?.[0] ?? resolve(schema?.anyOf?.[0])?.examples?.[0];
  const body = example && typeof example === 'object' && !Array.isArray(example) ? { ...(example as Record<string, unknown>) } : {};
  // A machine the fuzz creates by accident must be nobody's: loopback, a closed port.
  if ('host' in body) Object.assign(body, { host: '127.0.0.1', port: 1 });
  if ('machines' in body && Array.isArray(body.machines)) body.machines = body.machines.map((m) => (m && typeof m === 'object' ? { ...m, host: '127.0.0.1', port: 1 } : m));
  return body;
}

/** The malformed requests for one operation (without auth). */
function requestsFor(op: Operation): InjectOptions[] {
  const params = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
  const fill = (value: string) => op.path.replace(/\{[^}]+\}/g, value);
  const url = fill(params.length ? '00000000-0000-4000-8000-000000000000' : '');
  const method = op.method as InjectOptions['method'];
  const out: InjectOptions[] = [];
  for (const p of ODD_PARAMS) if (params.length) out.push({ method, url: fill(p) });
  for (const q of ODD_QUERIES) out.push({ method, url: `${url}?${q}` });
  if (!['GET', 'HEAD'].includes(op.method)) {
    const base = exampleBody(op);
    const schema = resolve(op.requestBody?.content['application/json']?.schema);
    const fields = Object.keys(schema?.properties ?? base);
    for (const field of fields) {
      for (const value of ODD_VALUES) out.push({ method, url, payload: { ...base, [field]: value } as object });
      const { [field]: _, ...without } = base;
      out.push({ method, url, payload: without });
    }
    out.push({ method, url, payload: { ...base, unexpected_field: 'x', role: 'admin', is_admin: true } });
    for (const { type, body } of BAD_BODIES) out.push({ method, url, headers: type ? { 'content-type': type } : {}, payload: body });
    out.push({ method, url }, { method, url, headers: { 'content-type': 'application/json' }, payload: '' });
    out.push({ method, url, headers: { 'content-type': 'application/json', 'idempotency-key': 'x'.repeat(300) }, payload: '{}' });
  }
  return out;
}

/** The actor's credentials, logging in again when a fuzzed request ended the session (logout, revoke). */
async function authOf(actor: Actor): Promise<Record<string, string>> {
  if (actor === 'anonymous') return {};
  const s = sessions[actor];
  const who = await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: s.auth });
  if (who.statusCode !== 200) sessions[actor] = await login(t.app, s.username);
  return sessions[actor].auth;
}

describe('fuzzing every operation', () => {
  it('never answers 5xx, never takes long, and refuses with problem documents', { timeout: 600_000 }, async () => {
    expect(operations.length).toBeGreaterThan(30);
    const failures: string[] = [];
    let sent = 0;
    for (const op of operations) {
      for (const actor of ['anonymous', 'user', 'admin'] as Actor[]) {
        const auth = await authOf(actor);
        for (const request of requestsFor(op)) {
          const started = performance.now();
          const res = await t.app.inject({ ...request, headers: { ...request.headers, ...auth } });
          const ms = performance.now() - started;
          sent++;
          const what = `${actor} ${request.method} ${String(request.url).slice(0, 120)} ${JSON.stringify(request.payload ?? '').slice(0, 120)}`;
          if (res.statusCode >= 500) failures.push(`${res.statusCode} ${what}: ${res.body.slice(0, 200)}`);
          else if (ms > 5000) failures.push(`${Math.round(ms)} ms ${what}`);
          else if (res.statusCode >= 400 && !String(res.headers['content-type']).startsWith('application/problem+json')) {
            failures.push(`${res.statusCode} without a problem document: ${what}`);
          }
        }
      }
    }
    expect(sent).toBeGreaterThan(3000);
    expect(failures).toEqual([]);
  });
});
