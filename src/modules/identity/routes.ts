// HTTP for identity: parse credentials from where clients put them, call the service,
// shape the answer. Every rule lives in service.ts / sessions.ts.
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, listQuery, page, problemResponses } from '../../http/common-schemas.js';
import { principalOf } from '../../http/principal.js';
import { sessionOf } from '../../shared/principal.js';
import type { AccessTokenPayload } from './guard.js';
import { AppError } from '../../errors/app-error.js';
import { problemSchema } from '../../http/problem-schema.js';
import type { Keyring } from './keyring.js';
import * as s from './schemas.js';
import type { IdentityService, TokenSet } from './service.js';
import { throttle, type ThrottleLimits } from './throttles.js';
import { looksLikeRefreshToken } from './tokens.js';
import { USERNAME_PATTERN } from '../../shared/usernames.js';
import { toUserDto } from './user-dto.js';

type Limits = Omit<ThrottleLimits, 'windowSeconds'>;
export interface IdentityThrottles {
  windowSeconds: number;
  login: Limits;
  register: Limits;
  passwordChange: Limits;
}

export interface IdentityRouteOptions {
  identity: IdentityService;
  keyring: Keyring;
  throttles: IdentityThrottles;
}


function toTokenResponse(t: TokenSet) {
  return {
    access_token: t.accessToken,
    token_type: 'Bearer' as const,
    expires_in: t.expiresIn,
    refresh_token: t.refreshToken,
    refresh_expires_in: t.refreshExpiresIn,
    session_id: t.sessionId,
  };
}

function meta(request: FastifyRequest) {
  return { userAgent: request.headers['user-agent'], ipAddress: request.ip };
}

/** `Authorization: Basic …` → credentials, or null when the header is not Basic. */
function basicCredentials(request: FastifyRequest): { username: string; password: string } | null {
  const header = request.headers.authorization;
  if (!header || !/^basic\s+/i.test(header)) return null;
  const decoded = Buffer.from(header.replace(/^basic\s+/i, ''), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new AppError('malformed_credentials', 'HTTP Basic credentials must be base64("username:password")');
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function bearerToken(request: FastifyRequest): string | null {
  const m = /^bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return m?.[1] ?? null;
}

/** The username a login or registration names, for the per-account throttle; names no user can have share one bucket. */
function attemptedUsername(request: FastifyRequest): string {
  const body = request.body as { username?: unknown } | undefined;
  let name: string;
  if (body && typeof body.username === 'string') name = body.username;
  else {
    try {
      name = basicCredentials(request)?.username ?? '';
    } catch {
      name = '';
    }
  }
  const canonical = name.trim().toLowerCase();
  return USERNAME_PATTERN.test(canonical) ? canonical : '(not a username)';
}

export const identityRoutes: FastifyPluginAsyncZod<IdentityRouteOptions> = async (app, opts) => {
  const { identity, keyring, throttles } = opts;
  const { windowSeconds } = throttles;
  const loginThrottle = throttle(app, 'login', { ...throttles.login, windowSeconds }, attemptedUsername);
  const registerThrottle = throttle(app, 'registration', { ...throttles.register, windowSeconds }, attemptedUsername);
  const passwordThrottle = throttle(app, 'password change', { ...throttles.passwordChange, windowSeconds }, (request) => principalOf(request).userId);

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'getJwks',
        tags: ['service'],
        summary: 'Public keys that verify access tokens',
        response: { 200: s.jwks },
      },
    },
    async () => keyring.jwks() as z.infer<typeof s.jwks>,
  );

  app.post(
    '/v1/register',
    {
      ...registerThrottle,
      schema: {
        operationId: 'register',
        tags: ['identity'],
        summary: 'Create an account (when registration is open)',
        body: s.registerBody,
        response: { 201: s.user, ...problemResponses(400, 403, 409, 429) },
      },
    },
    async (request, reply) => {
      const user = await identity.register(request.body);
      return reply.status(201).send(toUserDto(user));
    },
  );

  app.post(
    '/v1/token',
    {
      ...loginThrottle,
      schema: {
        operationId: 'createToken',
        tags: ['identity'],
        summary: 'Log in: username and password (JSON body or HTTP Basic) for an access and a refresh token',
        security: [{ basicAuth: [] }, {}],
        body: s.tokenBody,
        response: { 200: s.tokenResponse, ...problemResponses(400, 401, 403, 429) },
      },
    },
    async (request) => {
      const credentials = request.body ?? basicCredentials(request);
      if (!credentials) {
        throw new AppError('missing_credentials', 'send {"username","password"} as JSON or use HTTP Basic authentication');
      }
      return toTokenResponse(await identity.login(credentials.username, credentials.password, meta(request)));
    },
  );

  app.post(
    '/v1/token/refresh',
    {
      schema: {
        operationId: 'refreshToken',
        tags: ['identity'],
        summary: 'Exchange a refresh token for new tokens; the presented refresh token is spent',
        description: 'Presenting a refresh token that was already spent revokes its whole session.',
        body: s.refreshBody,
        response: { 200: s.tokenResponse, ...problemResponses(400, 401) },
      },
    },
    async (request) => {
      const token = request.body?.refresh_token ?? bearerToken(request);
      if (!token) throw new AppError('missing_refresh_token', 'send {"refresh_token"} or "Authorization: Bearer <refresh_token>"');
      return toTokenResponse(await identity.refresh(token));
    },
  );

  app.post(
    '/v1/token/verify',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'verifyToken',
        tags: ['identity'],
        summary: 'Check an access token: signature, expiry, and that its session is live',
        security: bearerSecurity,
        response: { 200: s.verifyResponse, 401: problemSchema },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const token = request.user as AccessTokenPayload;
      return {
        active: true as const,
        sub: principal.userId,
        username: principal.username,
        role: principal.role,
        session_id: principal.authenticatedBy.sessionId,
        iat: token.iat,
        exp: token.exp,
      };
    },
  );

  app.post(
    '/v1/logout',
    {
      schema: {
        operationId: 'logout',
        tags: ['identity'],
        summary: "End a session: its refresh tokens are spent and its access tokens rejected from now on",
        description: 'Authenticate with the access token, or send {"refresh_token"} in the body.',
        security: [...bearerSecurity, {}],
        body: s.logoutBody,
        response: { 204: z.null().meta({ description: 'logged out' }), ...problemResponses(400, 401) },
      },
    },
    async (request, reply) => {
      if (request.body?.refresh_token) {
        await identity.logoutWithRefreshToken(request.body.refresh_token);
      } else {
        const token = bearerToken(request);
        if (!token) throw new AppError('missing_token', 'send an access token or {"refresh_token"}');
        if (looksLikeRefreshToken(token)) {
          await identity.logoutWithRefreshToken(token);
        } else {
          // The token is verified, its session not checked: logging out an already-ended session is not an error.
          const payload = await app.verifyAccessToken(request);
          await identity.logoutSession({ id: payload.sid, userId: payload.sub });
        }
      }
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/whoami',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'whoami',
        tags: ['identity'],
        summary: 'The caller: user and session',
        security: bearerSecurity,
        response: { 200: s.whoamiResponse, 401: problemSchema },
      },
    },
    async (request) => {
      const p = principalOf(request);
      return { id: p.userId, username: p.username, email: p.email, role: p.role, session_id: p.authenticatedBy.sessionId };
    },
  );

  app.post(
    '/v1/password/change',
    {
      onRequest: app.authenticate,
      ...passwordThrottle,
      schema: {
        operationId: 'changePassword',
        tags: ['identity'],
        summary: 'Change your password; optionally end every other session',
        security: bearerSecurity,
        body: s.passwordChangeBody,
        response: { 200: s.passwordChangeResponse, ...problemResponses(400, 401, 403, 422, 429) },
      },
    },
    async (request) => {
      const { sessionsRevoked } = await identity.changePassword(principalOf(request), {
        currentPassword: request.body.current_password,
        newPassword: request.body.new_password,
        killSessions: request.body.kill_sessions,
      });
      return { changed: true as const, sessions_revoked: sessionsRevoked };
    },
  );

  app.get(
    '/v1/sessions',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listSessions',
        tags: ['identity'],
        summary: "The caller's active sessions, newest first",
        security: bearerSecurity,
        querystring: listQuery,
        response: { 200: page(s.session), ...problemResponses(400, 401) },
      },
    },
    async (request) => {
      const p = principalOf(request);
      const current = sessionOf(p);
      const { items, nextCursor } = await identity.listSessions(p.userId, request.query);
      return {
        items: items.map((x) => ({
          id: x.id,
          created_at: x.createdAt.toISOString(),
          last_used_at: x.lastUsedAt.toISOString(),
          expires_at: x.expiresAt.toISOString(),
          user_agent: x.userAgent,
          ip_address: x.ipAddress,
          current: x.id === current,
        })),
        next_cursor: nextCursor,
      };
    },
  );

  app.delete(
    '/v1/sessions/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'revokeSession',
        tags: ['identity'],
        summary: 'Revoke a session (your own, or any as admin)',
        description: "Another user's session answers 404, as if it did not exist.",
        security: bearerSecurity,
        params: idParams,
        response: { 204: z.null().meta({ description: 'revoked' }), ...problemResponses(400, 401, 404) },
      },
    },
    async (request, reply) => {
      await identity.revokeSession(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
};
