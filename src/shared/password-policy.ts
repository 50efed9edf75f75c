// The password policy: 8 to 256 characters, no composition rules, not one of the most
// common passwords, not the username (checked where the username is known).
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
