// The identity guard of every protected route: verify the bearer access token (EdDSA
// only, our issuer and audience, typ at+jwt, a kid we know), then ask the session checker
// whether its session is still live. Guards (onRequest): `app.authenticate`,
// `app.requireAdmin`; handlers read the caller with principalOf (src/http/principal.ts).
//
// Anyone can send a bearer value, so nothing an unverified one makes the guard do may
// last or grow: a value longer than any token berth signs is refused before it is
// decoded, an unknown kid fails at the key lookup, and only tokens that verified are
// remembered, in a cache bounded in bytes (VERIFIED_CACHE_BYTES).
import fastifyJwt from '@fastify/jwt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../../errors/app-error.js';
import '../../http/principal.js';
import type { Keyring } from './keyring.js';
import { SIGNING_ALGORITHM } from './keyring.js';
import type { SessionChecker } from './session-check.js';
import { ACCESS_TOKEN_TYP, accessTokenLengthLimit, looksLikeRefreshToken } from './tokens.js';
import { VerifiedTokenCache } from './verified-tokens.js';

/**
 * Verified access tokens kept at most, in bytes (see verified-tokens.ts for what an entry
 * counts): about 3,500 tokens of today's size, each reused until it expires; a token
 * pushed out is verified again (tens of microseconds) on its next use.
 */
export const VERIFIED_CACHE_BYTES = 8 * 1024 * 1024;

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
    /** The claims of the request's bearer access token once verified (no session check). */
    verifyAccessToken(request: FastifyRequest): Promise<AccessTokenPayload>;
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

const tokenTooLong = () =>
  new AppError('invalid_token', 'the access token is longer than any token this service issues', { active: false });
const missingToken = () => new AppError('missing_token', 'send an access token as "Authorization: Bearer <token>"', { active: false });

/** Turns @fastify/jwt's and fast-jwt's errors into one honest 401 (the problem plugin adds the challenge). */
function tokenProblem(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string }).code ?? '';
  return code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED'
    ? new AppError('token_expired', 'the access token has expired; refresh it', { active: false })
    : new AppError('invalid_token', 'the access token is malformed, has a bad signature, or was not issued for this service', { active: false });
}

export default fp(
  async function identityGuard(app: FastifyInstance, opts: AuthOptions) {
    const maxTokenLength = accessTokenLengthLimit(opts);
    // "Bearer", the spaces around the token: anything longer is refused unread.
    const maxHeaderLength = maxTokenLength + 32;
    const verified = new VerifiedTokenCache<AccessTokenPayload>(VERIFIED_CACHE_BYTES);

    /** The bearer token of the request; a value too long to be ours is refused before any parsing. */
    function bearerToken(request: FastifyRequest): string {
      const header = request.headers.authorization;
      if (!header) throw missingToken();
      if (header.length > maxHeaderLength) throw tokenTooLong();
      const token = /^bearer\s+(\S+)\s*$/i.exec(header)?.[1];
      if (!token) throw missingToken();
      if (token.length > maxTokenLength) throw tokenTooLong();
      return token;
    }

    await app.register(fastifyJwt, {
      secret: {
        // Signing happens in the token issuer (per-kid signers); this plugin only verifies.
        private: opts.keyring.signingKey.privatePem,
        // Callback style on purpose: a synchronous answer spares a promise per verification.
        public: (_request: FastifyRequest, token: unknown, callback: (err: Error | null, key?: string) => void) => {
          const kid = (token as { header?: { kid?: string } }).header?.kid;
          const pem = opts.keyring.publicKeyPem(kid);
          if (!pem) callback(new AppError('invalid_token', 'the access token was signed with an unknown key', { active: false }));
          else callback(null, pem);
        },
      },
      decode: { complete: true },
      verify: {
        extractToken: bearerToken,
        algorithms: [SIGNING_ALGORITHM],
        allowedIss: opts.issuer,
        allowedAud: opts.audience,
        requiredClaims: ['sub', 'sid', 'exp', 'iat', 'iss', 'aud'],
        checkTyp: ACCESS_TOKEN_TYP,
        // No cache in fast-jwt: it keeps failures too (keyed by the whole token), which
        // let made-up tokens fill the heap. `verified` above keeps successes only.
        cache: false,
      },
    });

    app.decorateRequest('principal', null);

    async function verifyAccessToken(request: FastifyRequest): Promise<AccessTokenPayload> {
      const token = bearerToken(request);
      if (looksLikeRefreshToken(token)) {
        throw new AppError('invalid_token', 'this is a refresh token; send it to /v1/token/refresh, not as an access token', {
          active: false,
        });
      }
      const hit = verified.get(token, Date.now());
      if (hit) {
        if (opts.keyring.publicKeyPem(hit.kid)) {
          request.user = hit.claims;
          return hit.claims;
        }
        verified.forget(token); // its key has been retired: verified again below, it fails
      }
      let claims: AccessTokenPayload;
      try {
        claims = await request.jwtVerify<AccessTokenPayload>();
      } catch (err) {
        throw tokenProblem(err);
      }
      // Verified, so the header decodes; its kid lets a hit check that the key still exists.
      const { kid } = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString()) as { kid: string };
      verified.remember(token, { claims, kid, expiresAt: claims.exp * 1000 });
      return claims;
    }

    async function authenticate(request: FastifyRequest): Promise<void> {
      const payload = await verifyAccessToken(request);
      // The principal names what authenticated it: this token's session (authenticatedBy).
      const principal = await opts.sessionChecker.check(payload.sid, payload.sub);
      if (!principal) {
        throw new AppError('session_revoked', 'the session of this token has ended (logged out, revoked or expired)', {
          active: false,
        });
      }
      request.principal = principal;
    }

    app.decorate('verifyAccessToken', verifyAccessToken);
    app.decorate('authenticate', async (request: FastifyRequest) => authenticate(request));
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      await authenticate(request);
      if (request.principal?.role !== 'admin') throw new AppError('admin_required', 'this action needs the admin role');
    });
  },
  { name: 'identity-guard', dependencies: ['problem'] },
);
