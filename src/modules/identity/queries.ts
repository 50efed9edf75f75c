// The SQL of identity and user administration that Prisma's query API cannot say: row
// locks (a user, the enabled admins, a user's sessions) and the batched deletes of pruning.
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';

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

/** Locks the enabled admins' rows until the transaction ends (the last-admin rule); their ids. */
export async function lockEnabledAdmins(tx: Prisma.TransactionClient): Promise<string[]> {
  const rows = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM users WHERE role = 'admin' AND disabled = false FOR UPDATE`;
  return rows.map((r) => r.id);
}

/**
 * Deletes at most `batch` sessions that can no longer be used (revoked, or expired by `now`),
 * with their refresh tokens (ON DELETE CASCADE), and `batch` refresh tokens expired by `now`
 * or spent before `spentBefore`; how many rows went.
 */
export async function deleteDeadSessionsBatch(prisma: PrismaClient, now: Date, spentBefore: Date, batch: number): Promise<number> {
  return (
    (await prisma.$executeRaw`DELETE FROM sessions WHERE revoked_at IS NOT NULL OR expires_at <= ${now} LIMIT ${batch}`) +
    (await prisma.$executeRaw`DELETE FROM refresh_tokens WHERE expires_at <= ${now} OR spent_at < ${spentBefore} LIMIT ${batch}`)
  );
}
