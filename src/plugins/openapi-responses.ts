// What every route can answer besides what its own schema lists, written into the OpenAPI
// document in one place: the problems Fastify and the shared plugins answer before or
// around a handler (a body too large or of the wrong type, a path parameter too long, the
// database away), the headers that go with answers (Retry-After, WWW-Authenticate, rate
// limits, Idempotent-Replayed), and the media types berth really sends. The test helpers
// check every answer of the test suite against the result (test/helpers/contract.ts).
import { STATUS_TITLES } from '../errors/codes.js';
import { PROBLEM_CONTENT_TYPE } from '../http/problem-schema.js';

interface Header {
  description: string;
  required?: boolean;
  schema: Record<string, unknown>;
}
type Content = Record<string, { schema?: { anyOf?: { type?: string }[] } & Record<string, unknown> }>;
interface Response {
  description?: string;
  content?: Content;
  headers?: Record<string, Header>;
}
interface Operation {
  parameters?: { in: string; name: string }[];
  requestBody?: { required?: boolean; content?: Content };
  responses?: Record<string, Response>;
}
export interface Document {
  paths?: Record<string, Record<string, Operation>>;
}

/** Methods whose requests Fastify reads a body of (and so may refuse for its size or type). */
const BODY_METHODS = new Set(['post', 'put', 'patch', 'delete']);

const seconds = { type: 'integer', minimum: 0 };
const RETRY_AFTER: Header = { description: 'seconds to wait before trying again', schema: seconds };
const RATE_LIMIT_HEADERS: Record<string, Header> = {
  'X-RateLimit-Limit': { description: 'requests this client address may make in the window', schema: seconds },
  'X-RateLimit-Remaining': { description: 'requests left in the window', schema: seconds },
  'X-RateLimit-Reset': { description: 'seconds until the window starts again', schema: seconds },
};
const WWW_AUTHENTICATE: Header = {
  description: 'how to authenticate (RFC 6750): `Bearer realm="berth"`, with `error="invalid_token"` when a token was sent',
  required: true,
  schema: { type: 'string' },
};
const IDEMPOTENT_REPLAYED: Header = {
  description: 'the answer to an earlier request with the same Idempotency-Key, sent again: nothing new was made',
  schema: { type: 'string', enum: ['true'] },
};

/** What each problem status means on any route, for the answers this file adds. */
const ADDED_PROBLEMS: Record<string, string> = {
  '400': 'the request is not valid (`validation_failed`, `malformed_body` …)',
  '413': '`payload_too_large`: the body is larger than this route takes',
  '414': '`uri_too_long`: a path parameter is longer than any berth accepts',
  '415': '`unsupported_media_type`: the body has a Content-Type this route does not take',
  '503': '`database_unavailable`: the database does not answer; see Retry-After',
};

const problemContent = (): Content => ({ [PROBLEM_CONTENT_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } });

function addProblem(op: Operation, status: string) {
  op.responses ??= {};
  op.responses[status] ??= { description: ADDED_PROBLEMS[status], content: problemContent() };
}

function addHeaders(response: Response, headers: Record<string, Header>) {
  response.headers = { ...response.headers, ...headers };
}

/** One operation, completed as described at the top of this file. */
function completeOperation(method: string, op: Operation) {
  const responses = Object.entries(op.responses ?? {});
  // Routes that answer problems at all (not /healthz, the JWKS) touch the database.
  const answersProblems = responses.some(([status]) => Number(status) >= 400);
  if (BODY_METHODS.has(method)) ['400', '413', '415'].forEach((status) => addProblem(op, status));
  if (op.parameters?.length) addProblem(op, '400');
  if (op.parameters?.some((p) => p.in === 'path')) addProblem(op, '414');
  if (answersProblems) addProblem(op, '503');

  // A route with a throttle (it can answer 429) reports its window on every answer.
  const throttled = Boolean(op.responses?.['429']);
  const idempotent = op.parameters?.some((p) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key');
  for (const [status, response] of Object.entries(op.responses ?? {})) {
    // The generator writes every response as JSON; problems are application/problem+json.
    const media = response.content && Object.values(response.content)[0];
    if (Number(status) >= 400 && media) response.content = { [PROBLEM_CONTENT_TYPE]: media };
    // The generator's placeholder says nothing; a problem's `code` says the rest.
    if (Number(status) >= 400 && response.description === 'Default Response') response.description = STATUS_TITLES[Number(status)] ?? 'Error';
    if (status === '401') addHeaders(response, { 'WWW-Authenticate': WWW_AUTHENTICATE });
    if (status === '429') addHeaders(response, { 'Retry-After': { ...RETRY_AFTER, required: true } });
    // database_unavailable says when to try again; a VM host without QEMU does not.
    if (status === '503') addHeaders(response, { 'Retry-After': RETRY_AFTER });
    if (throttled) addHeaders(response, RATE_LIMIT_HEADERS);
    if (idempotent && status.startsWith('2')) addHeaders(response, { 'Idempotent-Replayed': IDEMPOTENT_REPLAYED });
  }

  // A body that may be absent (a schema that allows null) is not required.
  const body = op.requestBody?.content && Object.values(op.requestBody.content)[0];
  if (body?.schema?.anyOf?.some((s) => s.type === 'null')) op.requestBody!.required = false;
}

/** The document with every operation completed. */
export function completeResponses<T extends Document>(doc: T): T {
  for (const item of Object.values(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(item)) completeOperation(method, op);
  }
  return doc;
}
