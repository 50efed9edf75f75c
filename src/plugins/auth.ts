// Authentication for every protected route: verify the bearer access token (EdDSA only,
// our issuer and audience, typ at+jwt, a kid we know), then ask the session checker
// whether its session is still live. Guards: `app.authenticate`, `app.requireAdmin`.
import fastifyJwt from '@fastify/jwt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Keyring } from '../modules/identity/keyring.js';
import { SIGNING_ALGORITHM } from '../modules/identity/keyring.js';
import type { Principal, SessionChecker } from '../modules/identity/session-check.js';
import { ACCESS_TOKEN_TYP, looksLikeRefreshToken } from '../modules/identity/tokens.js';
import { HttpProblem, problems } from './problem.js';

export interface AccessTokenPayload {
  sub: string;
  sid: string;
  username: string;
  role: 'user' | 'admin';
  iat: number;
  exp: number;
  iss: string;
  aud: string;
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessTokenPayload;
    user: AccessTokenPayload;
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest guard: requires a valid access token of a live session. */
    authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void>;
    /** onRequest guard: `authenticate`, then requires the admin role. */
    requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export interface AuthOptions {
  keyring: Keyring;
  sessionChecker: SessionChecker;
  issuer: string;
  audience: string;
}

const BEARER_CHALLENGE = 'Bearer realm="berth"';

/** Turns @fastify/jwt's and fast-jwt's errors into one honest 401. */
function tokenProblem(err: unknown): HttpProblem {
  if (err instanceof HttpProblem) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_JWT_NO_AUTHORIZATION_IN_HEADER' || code === 'FST_JWT_BAD_REQUEST') {
    const p = problems.unauthorized('missing_token', 'send an access token as "Authorization: Bearer <token>"', { active: false });
    p.headers['www-authenticate'] = BEARER_CHALLENGE;
    return p;
  }
  const detail =
    code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED'
      ? 'the access token has expired; refresh it'
      : 'the access token is malformed, has a bad signature, or was not issued for this service';
  return problems.unauthorized(code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED' ? 'token_expired' : 'invalid_token', detail, {
    active: false,
  });
}

export default fp(
  async function authPlugin(app: FastifyInstance, opts: AuthOptions) {
    await app.register(fastifyJwt, {
      secret: {
        // Signing happens in the token issuer (per-kid signers); this plugin only verifies.
        private: opts.keyring.signingKey.privatePem,
        // Callback style on purpose: a synchronous answer spares a promise per request.
        public: (_request: FastifyRequest, token: unknown, callback: (err: Error | null, key?: string) => void) => {
          const kid = (token as { header?: { kid?: string } }).header?.kid;
          const pem = opts.keyring.publicKeyPem(kid);
          if (!pem) callback(problems.unauthorized('invalid_token', 'the access token was signed with an unknown key', { active: false }));
          else callback(null, pem);
        },
      },
      decode: { complete: true },
      verify: {
        algorithms: [SIGNING_ALGORITHM],
        allowedIss: opts.issuer,
        allowedAud: opts.audience,
        requiredClaims: ['sub', 'sid', 'exp', 'iat', 'iss', 'aud'],
        checkTyp: ACCESS_TOKEN_TYP,
        // Verified tokens are remembered (until their exp) keyed by the token itself, which
        // spares the SHA-256 fast-jwt would otherwise compute on every request (measured:
        // whoami 46% of a bare route with it, 29% without). fast-jwt warns about any custom
        // key builder (GHSA-rp9m-7r4c-75qg: builders that map two tokens to one key); the
        // identity function cannot, so the start scripts disable that one warning code.
        cache: 10_000,
        cacheKeyBuilder: (token: string) => token,
      } as Record<string, unknown>,
    });

    app.decorateRequest('principal', null);

    async function authenticate(request: FastifyRequest): Promise<void> {
      const header = request.headers.authorization;
      if (header && /^bearer\s+brt_/i.test(header) && looksLikeRefreshToken(header.replace(/^bearer\s+/i, ''))) {
        throw problems.unauthorized('invalid_token', 'this is a refresh token; send it to /v1/token/refresh, not as an access token', {
          active: false,
        });
      }
      let payload: AccessTokenPayload;
      try {
        payload = await request.jwtVerify<AccessTokenPayload>();
      } catch (err) {
        throw tokenProblem(err);
      }
      const principal = await opts.sessionChecker.check(payload.sid, payload.sub);
      if (!principal) {
        throw problems.unauthorized('session_revoked', 'the session of this token has ended (logged out, revoked or expired)', {
          active: false,
        });
      }
      request.principal = principal;
    }

    app.decorate('authenticate', async (request: FastifyRequest) => authenticate(request));
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      await authenticate(request);
      if (request.principal?.role !== 'admin') throw problems.forbidden('admin_required', 'this action needs the admin role');
    });
  },
  { name: 'auth', dependencies: ['problem'] },
);

/** The principal of an authenticated request; only call behind a guard. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new Error('principalOf() used on a route without an auth guard');
  return request.principal;
}

/** Who is looking, for answers whose details only admins may see. */
export function viewerOf(request: FastifyRequest): { admin: boolean } {
  return { admin: principalOf(request).role === 'admin' };
}
