// RFC 9457 problem+json for every error berth answers. Domain code throws `AppError`
// with a code of the catalogue (src/errors/codes.ts); Fastify's own errors (validation,
// parsing, rate limits, routing) and an unreachable database are mapped here; anything
// else is a 500 whose message never reaches the client.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError } from '../errors/app-error.js';
import { ERROR_CODES, STATUS_TITLES, type ErrorCode } from '../errors/codes.js';
import { PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE } from '../http/problem-schema.js';
import { isDatabaseUnavailable } from '../infra/database.js';

/** What a client is told to wait while the database is away (the embedded one restarts within seconds). */
const DATABASE_RETRY_AFTER_SECONDS = 5;

interface ValidationIssue {
  pointer: string;
  message: string;
}

/** Every 401 says how to authenticate (RFC 6750): with an error when a token was sent. */
const BEARER_CHALLENGE = 'Bearer realm="berth"';

function send(
  reply: FastifyReply,
  request: FastifyRequest,
  code: ErrorCode,
  detail: string,
  extra: Record<string, unknown> = {},
  status: number = ERROR_CODES[code].status,
) {
  if (status === 401 && !reply.hasHeader('www-authenticate')) {
    reply.header('www-authenticate', code === 'missing_token' ? BEARER_CHALLENGE : `${BEARER_CHALLENGE}, error="invalid_token"`);
  }
  return reply
    .status(status)
    .type(PROBLEM_CONTENT_TYPE)
    .send({
      type: `${PROBLEM_TYPE_BASE}${code}`,
      title: STATUS_TITLES[status] ?? 'Error',
      detail,
      code,
      ...extra,
      status,
      instance: request.url.split('?')[0],
    });
}

function zodIssues(err: { validation: { instancePath: string; message?: string; params?: unknown }[] }, context?: string) {
  return err.validation.map<ValidationIssue>((v) => {
    const base = context === 'querystring' ? '/query' : context === 'params' ? '/params' : context === 'headers' ? '/headers' : '';
    return { pointer: `${base}${v.instancePath}` || '/', message: v.message ?? 'is invalid' };
  });
}

/** Fastify's own errors for malformed requests, as codes of the catalogue. */
function clientErrorCode(err: FastifyError): ErrorCode {
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

/**
 * Fastify's routing errors, which come before any route or plugin: a URL that does not
 * decode, a path parameter longer than the router takes. Given to Fastify as `frameworkErrors`.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  return err.code === 'FST_ERR_MAX_PARAM_LENGTH'
    ? send(reply, request, 'uri_too_long', 'a path parameter is longer than any berth accepts')
    : send(reply, request, 'bad_url', 'the URL does not decode');
}

/**
 * Errors Node's HTTP server meets before Fastify has a request (a request that does not
 * arrive within BERTH_REQUEST_TIMEOUT_SECONDS, malformed HTTP), written as problems
 * straight to the socket. Given to Fastify as `clientErrorHandler`.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: import('node:net').Socket) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request';
  const { status } = ERROR_CODES[code];
  const body = JSON.stringify({
    type: `${PROBLEM_TYPE_BASE}${code}`,
    title: STATUS_TITLES[status] ?? 'Error',
    status,
    detail: code === 'request_timeout' ? 'the request did not arrive in time' : 'the request is not valid HTTP',
    code,
  });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TITLES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

export default fp(
  async function problemPlugin(app: FastifyInstance) {
    app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
      if (err instanceof AppError) {
        reply.headers(err.headers);
        return send(reply, request, err.code, err.detail, err.extra);
      }
      if (hasZodFastifySchemaValidationErrors(err)) {
        const errors = zodIssues(err, (err as FastifyError).validationContext);
        return send(reply, request, 'validation_failed', 'the request does not match the schema', { errors });
      }
      if (isDatabaseUnavailable(err)) {
        request.log.warn({ err: (err as Error).message }, 'the database is unavailable');
        reply.header('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
        return send(reply, request, 'database_unavailable', 'the database does not answer; try again shortly');
      }
      const status = err.statusCode ?? 500;
      if (status >= 400 && status < 500) {
        // Fastify's status stands (405, 406 … come as bad_request).
        return send(reply, request, clientErrorCode(err), err.message, {}, status);
      }
      request.log.error({ err }, 'unhandled error');
      return send(reply, request, 'internal_error', 'an unexpected error occurred; it has been logged');
    });

    app.setNotFoundHandler((request, reply) =>
      send(reply, request, 'route_not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
    );
  },
  { name: 'problem' },
);
