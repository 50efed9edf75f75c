import { z } from 'zod';
import { email, newPassword, username } from '../../http/common-schemas.js';
import { role } from '../identity/schemas.js';

export const createUserBody = z
  .object({ username, password: newPassword, email: email.optional(), role: role.default('user') })
  .refine((b) => b.password.toLowerCase() !== b.username, { path: ['password'], message: 'must not be the username' })
  .meta({ examples: [{ username: 'bob', password: 'a long and unusual passphrase', email: 'bob@example.com', role: 'user' }] });

export const listUsersQuery = z.object({
  email: z.string().max(254).optional().meta({ description: 'exact email address' }),
  role: role.optional(),
  q: z.string().min(1).max(64).optional().meta({ description: 'substring of the username or email' }),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

export const patchUserBody = z
  .object({
    email: email.nullable().optional(),
    role: role.optional(),
    disabled: z.boolean().optional(),
    password: newPassword.optional(),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, { message: 'name at least one of email, role, disabled, password' })
  .meta({
    minProperties: 1,
    description: 'Admins may change any field; a user may change only their own email. Disabling a user or setting their password ends their sessions.',
    examples: [{ role: 'admin' }, { email: 'new@example.com' }, { disabled: true }],
  });
