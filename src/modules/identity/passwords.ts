// Password hashing (argon2id) and the password policy: 8 to 256 characters, no
// composition rules, not one of the most common passwords, not the username.
import argon2, { type HashOptions } from 'argon2';
import { dictionary } from '@zxcvbn-ts/language-common';

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 256;

// zxcvbn-ts's list of ~49k common passwords (from leaked-password corpora); entries shorter
// than the minimum length are rejected by length anyway, so they are left out of the set.
const COMMON_PASSWORDS: ReadonlySet<string> = new Set(
  (dictionary['passwords-common'] as string[]).filter((p) => p.length >= PASSWORD_MIN).map((p) => p.toLowerCase()),
);

export function isCommonPassword(password: string): boolean {
  return COMMON_PASSWORDS.has(password.toLowerCase());
}

/** Length in characters the way a person counts them (code points, not UTF-16 units). */
export function passwordLength(password: string): number {
  return [...password].length;
}

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
      let ok = false;
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
