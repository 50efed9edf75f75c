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

/** Ed25519 signatures are 64 bytes: 86 base64url characters. */
const SIGNATURE_CHARACTERS = 86;
/** Room for what the worst case below might not foresee (a longer kid format, a new claim). */
const LENGTH_MARGIN = 512;
const base64urlLength = (json: string) => Math.ceil((Buffer.byteLength(json) * 4) / 3);

/**
 * An upper bound on the length of every access token this issuer can sign, margin
 * included: the guard refuses a longer bearer value before decoding it. The worst case has
 * the longest username (32 characters), 36-character ids, the admin role, kids and times
 * longer than any berth writes (kids have 28 characters, times 10 digits), and the configured
 * issuer and audience (JSON escapes and UTF-8 counted). With the defaults: 994 characters.
 */
export function accessTokenLengthLimit(opts: { issuer: string; audience: string }): number {
  const id = '0'.repeat(36);
  const header = { alg: SIGNING_ALGORITHM, typ: ACCESS_TOKEN_TYP, kid: 'k'.repeat(40) };
  const claims: AccessClaims & { exp: number; iat: number; iss: string; aud: string } = {
    sub: id,
    sid: id,
    username: 'u'.repeat(32),
    role: 'admin',
    exp: 99_999_999_999,
    iat: 99_999_999_999,
    iss: opts.issuer,
    aud: opts.audience,
  };
  const longest = base64urlLength(JSON.stringify(header)) + 1 + base64urlLength(JSON.stringify(claims)) + 1 + SIGNATURE_CHARACTERS;
  return longest + LENGTH_MARGIN;
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
