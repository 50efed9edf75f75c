// Schemas shared by every module: ids, timestamps, list envelopes, usernames, passwords.
import { z } from 'zod';
import { PASSWORD_MAX, PASSWORD_MIN, isCommonPassword, passwordLength } from '../shared/password-policy.js';
import { problemSchema } from './problem-schema.js';
import { USERNAME_PATTERN, USERNAME_RULE } from '../shared/usernames.js';

export const uuid = z.uuid();
export const timestamp = z.iso.datetime().meta({ examples: ['2026-11-21T09:30:00.000Z'] });

/**
 * berth usernames double as the default Unix account name on reserved machines, so they
 * follow the portable Unix pattern: a lowercase letter, then lowercase letters, digits,
 * `_` or `-`, 2 to 32 characters in all.
 */
export const username = z.string().regex(USERNAME_PATTERN, USERNAME_RULE).meta({ examples: ['alice'] });

export const email = z.email().max(254).meta({ examples: ['alice@example.com'] });

/** A password that is about to be set: length and the common-password list are checked here. */
export const newPassword = z
  .string()
  .refine((p) => passwordLength(p) >= PASSWORD_MIN, `must be at least ${PASSWORD_MIN} characters`)
  .refine((p) => passwordLength(p) <= PASSWORD_MAX, `must be at most ${PASSWORD_MAX} characters`)
  .refine((p) => !isCommonPassword(p), 'is one of the most commonly used passwords; choose another')
  .meta({ minLength: PASSWORD_MIN, maxLength: PASSWORD_MAX, examples: ['correct horse battery staple'] });

/** A password being checked (login, current password): any string, bounded for safety. */
export const presentedPassword = z.string().min(1).max(1024);

export const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

export function page<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() });
}

export const idParams = z.object({ id: uuid });

/** OpenAPI security requirement of routes that take an access token. */
export const bearerSecurity = [{ bearerAuth: [] }];

/**
 * Response schemas for the problem statuses a route can answer; every such route can also
 * answer 503 database_unavailable while the database is away.
 */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries([...statuses, 503].map((status) => [status, problemSchema]));
}
