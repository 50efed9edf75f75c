// The identity module's SQL that Prisma's query API cannot say: row locks on a user.
import type { Prisma } from '../../generated/prisma/client.js';

export interface LockedUser {
  id: string;
  username: string;
  role: 'user' | 'admin';
  disabled: boolean;
  passwordHash: string;
}

/**
 * Locks the user's row until the transaction ends and reads it; null when there is no such
 * user. Everything that must not interleave for one user takes this lock: logins against
 * password changes and disabling, the per-user machine limit of allocations, the
 * last-admin rule.
 */
export async function lockUser(tx: Prisma.TransactionClient, id: string): Promise<LockedUser | null> {
  const [row] = await tx.$queryRaw<{ id: string; username: string; role: 'user' | 'admin'; disabled: number | boolean; password_hash: string }[]>`
    SELECT id, username, role, disabled, password_hash FROM users WHERE id = ${id} FOR UPDATE`;
  return row ? { id: row.id, username: row.username, role: row.role, disabled: Boolean(Number(row.disabled)), passwordHash: row.password_hash } : null;
}
