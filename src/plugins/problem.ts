// RFC 9457 problem+json for every error berth answers. Domain code throws `HttpProblem`
// (or a subclass); Fastify's own errors (validation, parsing, auth, rate limits) are
// mapped here; anything else is a 500 whose message never reaches the client.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isDatabaseUnavailable } from '../infra/database.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const TYPE_BASE = 'https://berth.dev/problems/';
/** What a client is told to wait while the database is away (the embedded one restarts within seconds). */
const DATABASE_RETRY_AFTER_SECONDS = 5;

export interface ProblemFields {
  status: number;
  code: string;
  title: string;
  detail?: string;
  /** Extra members merged into the body (e.g. `available`, `active`). */
  extra?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export class HttpProblem extends Error {
  readonly statusCode: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string | undefined;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(f: ProblemFields) {
    super(f.detail ?? f.title);
    this.name = 'HttpProblem';
    this.statusCode = f.status;
    this.code = f.code;
    this.title = f.title;
    this.detail = f.detail;
    this.extra = f.extra ?? {};
    this.headers = f.headers ?? {};
  }
}

/** Shorthands for the problems every module raises. */
export const problems = {
  badRequest: (code: string, detail: string) => new HttpProblem({ status: 400, code, title: 'Bad Request', detail }),
  unauthorized: (code: string, detail: string, extra?: Record<string, unknown>) =>
    new HttpProblem({
      status: 401,
      code,
      title: 'Unauthorized',
      detail,
      extra,
      headers: { 'www-authenticate': `Bearer realm="berth", error="invalid_token"` },
    }),
  forbidden: (code: string, detail: string) => new HttpProblem({ status: 403, code, title: 'Forbidden', detail }),
  notFound: (code: string, detail: string) => new HttpProblem({ status: 404, code, title: 'Not Found', detail }),
  conflict: (code: string, detail: string, extra?: Record<string, unknown>) =>
    new HttpProblem({ status: 409, code, title: 'Conflict', detail, extra }),
  unprocessable: (code: string, detail: string) =>
    new HttpProblem({ status: 422, code, title: 'Unprocessable Content', detail }),
};

/** The problem document, for response schemas and the OpenAPI document. */
export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    code: z.string(),
    instance: z.string().optional(),
    errors: z.array(z.object({ pointer: z.string(), message: z.string() })).optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'Problem',
    description: 'RFC 9457 problem details',
    examples: [
      {
        type: `${TYPE_BASE}invalid_credentials`,
        title: 'Unauthorized',
        status: 401,
        detail: 'username or password is wrong',
        code: 'invalid_credentials',
        instance: '/v1/token',
      },
    ],
  });

interface ValidationIssue {
  pointer: string;
  message: string;
}

function send(reply: FastifyReply, request: FastifyRequest, body: Record<string, unknown>, status: number) {
  const { code } = body as { code: string };
  return reply
    .status(status)
    .type(PROBLEM_CONTENT_TYPE)
    .send({ type: `${TYPE_BASE}${code}`, ...body, status, instance: request.url.split('?')[0] });
}

function zodIssues(err: { validation: { instancePath: string; message?: string; params?: unknown }[] }, context?: string) {
  return err.validation.map<ValidationIssue>((v) => {
    const base = context === 'querystring' ? '/query' : context === 'params' ? '/params' : context === 'headers' ? '/headers' : '';
    return { pointer: `${base}${v.instancePath}` || '/', message: v.message ?? 'is invalid' };
  });
}

/** Maps Fastify's own error codes for malformed requests to problems. */
function clientErrorCode(err: FastifyError): string {
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported_media_type';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'payload_too_large';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'malformed_body';
    default:
      return err.statusCode === 429 ? 'rate_limited' : 'bad_request';
  }
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/**
 * Fastify's routing errors, which come before any route or plugin: a URL that does not
 * decode, a path parameter longer than the router takes. Given to Fastify as `frameworkErrors`.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
  const status = tooLong ? 414 : 400;
  return send(
    reply,
    request,
    { title: titles[status], detail: tooLong ? 'a path parameter is longer than any berth accepts' : 'the URL does not decode', code: tooLong ? 'uri_too_long' : 'bad_url' },
    status,
  );
}

export default fp(
  async function problemPlugin(app: FastifyInstance) {
    app.setErrorHandler((err: FastifyError | HttpProblem, request, reply) => {
      if (err instanceof HttpProblem) {
        reply.headers(err.headers);
        return send(reply, request, { title: err.title, detail: err.detail, code: err.code, ...err.extra }, err.statusCode);
      }
      if (hasZodFastifySchemaValidationErrors(err)) {
        const errors = zodIssues(err, (err as FastifyError).validationContext);
        return send(
          reply,
          request,
          { title: 'Bad Request', detail: 'the request does not match the schema', code: 'validation_failed', errors },
          400,
        );
      }
      if (isDatabaseUnavailable(err)) {
        request.log.warn({ err: (err as Error).message }, 'the database is unavailable');
        reply.header('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
        return send(
          reply,
          request,
          { title: 'Service Unavailable', detail: 'the database does not answer; try again shortly', code: 'database_unavailable' },
          503,
        );
      }
      const status = err.statusCode ?? 500;
      if (status >= 400 && status < 500) {
        return send(reply, request, { title: titles[status] ?? 'Bad Request', detail: err.message, code: clientErrorCode(err) }, status);
      }
      request.log.error({ err }, 'unhandled error');
      return send(
        reply,
        request,
        { title: 'Internal Server Error', detail: 'an unexpected error occurred; it has been logged', code: 'internal_error' },
        500,
      );
    });

    app.setNotFoundHandler((request, reply) =>
      send(reply, request, { title: 'Not Found', detail: `no route ${request.method} ${request.url.split('?')[0]}`, code: 'route_not_found' }, 404),
    );
  },
  { name: 'problem' },
);
