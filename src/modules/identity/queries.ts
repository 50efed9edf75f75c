// The identity module's SQL that Prisma's query API cannot say: row locks on a user and on
// their sessions.
import { Prisma } from '../../generated/prisma/client.js';

export interface LockedUser {
  id: string;
  username: string;
  email: string | null;
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
  const [row] = await tx.$queryRaw<{ id: string; username: string; email: string | null; role: 'user' | 'admin'; disabled: number | boolean; password_hash: string }[]>`
    SELECT id, username, email, role, disabled, password_hash FROM users WHERE id = ${id} FOR UPDATE`;
  return row
    ? { id: row.id, username: row.username, email: row.email, role: row.role, disabled: Boolean(Number(row.disabled)), passwordHash: row.password_hash }
    : null;
}

/**
 * Locks the user's live sessions (but `except`, the caller's own) until the transaction
 * ends; their ids. A revocation that names them cannot then interleave with a logout.
 */
export async function lockLiveSessions(tx: Prisma.TransactionClient, userId: string, except: string | null): Promise<string[]> {
  const rows = await tx.$queryRaw<{ id: string }[]>`
    SELECT id FROM sessions WHERE user_id = ${userId} AND revoked_at IS NULL ${except ? Prisma.sql`AND id <> ${except}` : Prisma.empty} FOR UPDATE`;
  return rows.map((r) => r.id);
}
