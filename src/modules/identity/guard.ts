// The identity guard of every protected route: verify the bearer access token (EdDSA
// only, our issuer and audience, typ at+jwt, a kid we know), then ask the session checker
// whether its session is still live. Guards (onRequest): `app.authenticate`,
// `app.requireAdmin`; handlers read the caller with principalOf (src/http/principal.ts).
import fastifyJwt from '@fastify/jwt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../../errors/app-error.js';
import '../../http/principal.js';
import type { Keyring } from './keyring.js';
import { SIGNING_ALGORITHM } from './keyring.js';
import type { SessionChecker } from './session-check.js';
import { ACCESS_TOKEN_TYP, looksLikeRefreshToken } from './tokens.js';

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
}

export interface AuthOptions {
  keyring: Keyring;
  sessionChecker: SessionChecker;
  issuer: string;
  audience: string;
}

/** Turns @fastify/jwt's and fast-jwt's errors into one honest 401 (the problem plugin adds the challenge). */
function tokenProblem(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_JWT_NO_AUTHORIZATION_IN_HEADER' || code === 'FST_JWT_BAD_REQUEST') {
    return new AppError('missing_token', 'send an access token as "Authorization: Bearer <token>"', { active: false });
  }
  return code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED'
    ? new AppError('token_expired', 'the access token has expired; refresh it', { active: false })
    : new AppError('invalid_token', 'the access token is malformed, has a bad signature, or was not issued for this service', { active: false });
}

export default fp(
  async function identityGuard(app: FastifyInstance, opts: AuthOptions) {
    await app.register(fastifyJwt, {
      secret: {
        // Signing happens in the token issuer (per-kid signers); this plugin only verifies.
        private: opts.keyring.signingKey.privatePem,
        // Callback style on purpose: a synchronous answer spares a promise per request.
        public: (_request: FastifyRequest, token: unknown, callback: (err: Error | null, key?: string) => void) => {
          const kid = (token as { header?: { kid?: string } }).header?.kid;
          const pem = opts.keyring.publicKeyPem(kid);
          if (!pem) callback(new AppError('invalid_token', 'the access token was signed with an unknown key', { active: false }));
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
        throw new AppError('invalid_token', 'this is a refresh token; send it to /v1/token/refresh, not as an access token', {
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
        throw new AppError('session_revoked', 'the session of this token has ended (logged out, revoked or expired)', {
          active: false,
        });
      }
      request.principal = principal;
    }

    app.decorate('authenticate', async (request: FastifyRequest) => authenticate(request));
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      await authenticate(request);
      if (request.principal?.role !== 'admin') throw new AppError('admin_required', 'this action needs the admin role');
    });
  },
  { name: 'identity-guard', dependencies: ['problem'] },
);
