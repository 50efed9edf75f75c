// Access tokens (short-lived EdDSA JWTs, RFC 9068 `at+jwt`) and refresh tokens (opaque
// random strings of which only a SHA-256 is stored).
import { createHash, randomBytes } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import type { Keyring } from './keyring.js';
import { SIGNING_ALGORITHM } from './keyring.js';

export const ACCESS_TOKEN_TYP = 'at+jwt';
/** Prefix so secret scanners and people can tell a berth refresh token at a glance. */
const REFRESH_PREFIX = 'brt_';
const REFRESH_BYTES = 32; // 256 bits

export interface AccessClaims {
  sub: string;
  sid: string;
  username: string;
  role: 'user' | 'admin';
}

export interface TokenIssuer {
  /** Signs an access token; it never outlives its session. */
  issueAccessToken(claims: AccessClaims, sessionExpiresAt: Date): { token: string; expiresIn: number };
}

export function createTokenIssuer(
  keyring: Keyring,
  opts: { issuer: string; audience: string; accessTtlSeconds: number },
): TokenIssuer {
  type Signer = (payload: AccessClaims & { exp: number }) => string;
  const signers = new Map<string, Signer>();
  function signerFor(kid: string, privatePem: string): Signer {
    let signer = signers.get(kid);
    if (!signer) {
      signer = createSigner({
        key: privatePem,
        algorithm: SIGNING_ALGORITHM,
        kid,
        iss: opts.issuer,
        aud: opts.audience,
        header: { alg: SIGNING_ALGORITHM, typ: ACCESS_TOKEN_TYP },
      }) as Signer;
      signers.set(kid, signer);
    }
    return signer;
  }
  return {
    issueAccessToken(claims, sessionExpiresAt) {
      const now = Math.floor(Date.now() / 1000);
      const exp = Math.min(now + opts.accessTtlSeconds, Math.floor(sessionExpiresAt.getTime() / 1000));
      const { kid, privatePem } = keyring.signingKey;
      const token = signerFor(kid, privatePem)({ ...claims, exp });
      return { token, expiresIn: Math.max(exp - now, 0) };
    },
  };
}

export function newRefreshToken(): { token: string; hash: string } {
  const token = REFRESH_PREFIX + randomBytes(REFRESH_BYTES).toString('base64url');
  return { token, hash: hashRefreshToken(token) };
}

export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function looksLikeRefreshToken(token: string): boolean {
  return token.startsWith(REFRESH_PREFIX);
}
