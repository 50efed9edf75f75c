// Every answer a test gets from berth, checked against the OpenAPI document berth serves:
// its status must be documented for its operation, its content type listed, its JSON body
// valid against the documented schema, its documented headers present (when required) and
// well-formed, and the headers clients act on (Retry-After, rate limits, Location …)
// documented where they are sent. createTestApp attaches this to every test app; what does
// not agree fails the test that caused it (test/helpers/app.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

type Json = any;

/** Headers a client acts on: sent, they must be documented for that answer. */
const WATCHED_HEADERS = [
  'retry-after',
  'location',
  'idempotent-replayed',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'www-authenticate',
];

const DOCUMENT_ID = 'openapi.json';

/** The compiled document: one per test file (every app of a file serves the same one). */
interface Compiled {
  doc: Json;
  ajv: Ajv2020;
  validators: Map<string, ValidateFunction>;
}
let compiled: Compiled | undefined;

function compile(app: FastifyInstance): Compiled {
  if (compiled) return compiled;
  const doc = app.swagger() as Json;
  // OpenAPI 3.1 schemas are JSON Schema 2020-12 plus annotations (`example`) ajv does not know.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
  addFormats.default(ajv);
  ajv.addSchema(doc, DOCUMENT_ID);
  compiled = { doc, ajv, validators: new Map() };
  return compiled;
}

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');

function validator(c: Compiled, ...parts: string[]): ValidateFunction {
  const ref = `${DOCUMENT_ID}#/${pointer(...parts)}`;
  let v = c.validators.get(ref);
  if (!v) c.validators.set(ref, (v = c.ajv.compile({ $ref: ref })));
  return v;
}

const essence = (contentType: unknown) => String(contentType ?? '').split(';')[0]!.trim().toLowerCase();

function bodyText(payload: unknown): string | null {
  if (typeof payload === 'string') return payload;
  if (Buffer.isBuffer(payload)) return payload.toString('utf8');
  return null; // a stream: its bytes are not ours to read
}

/** What is wrong with one answer, as sentences (none when it agrees with the document). */
function disagreements(c: Compiled, request: FastifyRequest, reply: FastifyReply, payload: unknown): string[] {
  const problems: string[] = [];
  const status = reply.statusCode;
  const method = request.method.toLowerCase();
  const route = request.routeOptions.url;
  const headers = reply.getHeaders();
  const text = bodyText(payload);
  // Fastify's HEAD routes mirror GET and are not in the document.
  if (method === 'head') return problems;

  const path = route?.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
  const operation = path ? c.doc.paths?.[path]?.[method] : undefined;
  if (!operation) {
    // No operation: a hidden route (/openapi.json, /docs) answers what it likes, but an
    // error without a route (404 route_not_found, an undecodable URL) is still a problem document.
    if (status >= 400 && text !== null) {
      const v = validator(c, 'components', 'schemas', 'Problem');
      if (!v(JSON.parse(text))) problems.push(`the problem document is not valid: ${c.ajv.errorsText(v.errors)}`);
    }
    return problems;
  }

  const statusKey = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => operation.responses?.[k]);
  if (!statusKey) {
    const code = text && /"code":"([a-z_]+)"/.exec(text)?.[1];
    return [`status ${status}${code ? ` (${code})` : ''} is not documented (documented: ${Object.keys(operation.responses ?? {}).join(', ')})`];
  }
  const documented = operation.responses[statusKey];

  const media = essence(headers['content-type']);
  const content = documented.content as Record<string, Json> | undefined;
  if (!content) {
    // Fastify never writes a body for a 204, whatever the handler gave it.
    if (text && status !== 204) problems.push(`a ${status} has no body in the document, but one was sent (${media})`);
  } else if (!content[media]) {
    problems.push(`content type ${media || '(none)'} is not documented for ${status} (documented: ${Object.keys(content).join(', ')})`);
  } else if (text !== null && /json$/.test(media) && content[media].schema) {
    const v = validator(c, 'paths', path!, method, 'responses', statusKey, 'content', media, 'schema');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      problems.push(`the ${media} body is not JSON`);
    }
    if (body !== undefined && !v(body)) problems.push(`the body does not match the documented schema: ${c.ajv.errorsText(v.errors)}`);
  }

  const documentedHeaders = Object.fromEntries(
    Object.entries((documented.headers ?? {}) as Record<string, Json>).map(([name, h]) => [name.toLowerCase(), h]),
  );
  for (const [name, header] of Object.entries(documentedHeaders)) {
    const value = headers[name];
    if (value === undefined) {
      if (header.required) problems.push(`the required header ${name} is missing`);
      continue;
    }
    const schema = header.schema ?? {};
    const raw = String(value);
    const typed = schema.type === 'integer' || schema.type === 'number' ? (/^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw) : raw;
    const v = c.ajv.compile(schema);
    if (!v(typed)) problems.push(`header ${name}: ${JSON.stringify(raw)} ${c.ajv.errorsText(v.errors)}`);
  }
  for (const name of WATCHED_HEADERS) {
    if (headers[name] !== undefined && !documentedHeaders[name]) problems.push(`header ${name} is sent but not documented for ${status}`);
  }
  return problems;
}

/**
 * Hooks that check every answer of `app` (give it to buildApp as `observe`); disagreements
 * are added to `violations`, one sentence each, naming the request.
 */
export function checkAnswersAgainstDocument(violations: string[]) {
  return (app: FastifyInstance) => {
    const payloads = new WeakMap<FastifyRequest, unknown>();
    app.addHook('onSend', async (request, _reply, payload) => {
      payloads.set(request, payload);
      return payload;
    });
    app.addHook('onResponse', async (request, reply) => {
      let found: string[];
      try {
        found = disagreements(compile(app), request, reply, payloads.get(request));
      } catch (err) {
        found = [`could not be checked: ${(err as Error).message}`];
      }
      for (const problem of found) violations.push(`${request.method} ${request.url.slice(0, 200)} → ${reply.statusCode}: ${problem}`);
    });
  };
}
