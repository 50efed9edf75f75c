// Password hashing: argon2id at OWASP's parameters or stronger, with a rehash on login
// when they change. The policy for new passwords is in src/shared/password-policy.ts.
import argon2, { type HashOptions } from 'argon2';

export interface Argon2Parameters {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** Checks a password; `needsRehash` is true when the hash uses other parameters than ours. */
  verify(hash: string, password: string): Promise<{ ok: boolean; needsRehash: boolean }>;
  /** Burns the same time as a real verify, for users that do not exist. */
  verifyDummy(password: string): Promise<void>;
}

export async function createPasswordHasher(params: Argon2Parameters): Promise<PasswordHasher> {
  const options: HashOptions = { type: argon2.argon2id, ...params };
  // A hash with our own parameters, so a miss costs exactly what a hit costs.
  const dummyHash = await argon2.hash('berth-dummy-password-for-timing', options);
  return {
    hash: (password) => argon2.hash(password, options),
    async verify(hash, password) {
      let ok: boolean;
      try {
        ok = await argon2.verify(hash, password);
      } catch {
        ok = false; // a malformed stored hash is a failed login, not a crash
      }
      return { ok, needsRehash: ok && argon2.needsRehash(hash, options) };
    },
    async verifyDummy(password) {
      await argon2.verify(dummyHash, password).catch(() => false);
    },
  };
}
