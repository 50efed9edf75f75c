// User administration. The one invariant that needs care: there is always at least one
// enabled admin. Changes that could remove the last one lock the admin rows first, so two
// admins demoting each other at once cannot both succeed. What an admin did to an account
// (made, changed, reset its password, deleted it, and the sessions that ended with it) is
// raised once it has committed.
import type { EventBus } from '../../events/bus.js';
import type { Prisma, PrismaClient } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import type { PasswordHasher } from '../identity/passwords.js';
import { userSelect, type IdentityService, type UserRecord } from '../identity/service.js';
import type { Principal } from '../../shared/principal.js';
import type { SessionChecker } from '../identity/session-check.js';
import { lockEnabledAdmins, lockUser, type LockedUser } from '../identity/queries.js';
import { pageOf } from '../../infra/paging.js';
import { withDeadlockRetry } from '../../infra/database.js';

export interface UsersDeps {
  prisma: PrismaClient;
  hasher: PasswordHasher;
  identity: Pick<IdentityService, 'createUser'>;
  checker: Pick<SessionChecker, 'forgetUser'>;
  events: Pick<EventBus, 'raise' | 'afterCommit'>;
  /** Releases the user's active reservations (accounts removed) before the user goes. */
  releaseReservationsOf(userId: string): Promise<unknown>;
}

export interface UserPatch {
  email?: string | null;
  role?: 'user' | 'admin';
  disabled?: boolean;
  password?: string;
}

const notFound = () => new AppError('user_not_found', 'no such user');

/** The fields of `patch` whose value differs from the user's (`user.updated` names them; the password has its own event). */
function changedFields(before: LockedUser, patch: UserPatch): string[] {
  const fields: string[] = [];
  if (patch.email !== undefined && patch.email !== before.email) fields.push('email');
  if (patch.role !== undefined && patch.role !== before.role) fields.push('role');
  if (patch.disabled !== undefined && patch.disabled !== before.disabled) fields.push('disabled');
  return fields;
}


export function createUsersService({ prisma, hasher, identity, checker, events, releaseReservationsOf }: UsersDeps) {
  /** Inside a transaction: throws unless some other enabled admin would remain. */
  async function assertAnotherAdmin(tx: Prisma.TransactionClient, userId: string) {
    const admins = await lockEnabledAdmins(tx);
    if (!admins.some((id) => id !== userId)) {
      throw new AppError('last_admin', 'this is the last enabled admin; promote another user first');
    }
  }

  return {
    async create(input: Parameters<IdentityService['createUser']>[0]): Promise<UserRecord> {
      const user = await identity.createUser(input);
      await events.raise('user.created', { userId: user.id, username: user.username, role: user.role });
      return user;
    },

    async list(filter: { email?: string; role?: 'user' | 'admin'; q?: string; limit: number; cursor?: string }) {
      const where: Prisma.UserWhereInput = {
        ...(filter.email && { email: filter.email }),
        ...(filter.role && { role: filter.role }),
        ...(filter.q && { OR: [{ username: { contains: filter.q } }, { email: { contains: filter.q } }] }),
        ...(filter.cursor && { username: { gt: filter.cursor } }),
      };
      const rows = await prisma.user.findMany({ where, orderBy: { username: 'asc' }, take: filter.limit + 1, select: userSelect });
      return pageOf(rows, filter.limit, (u) => u.username);
    },

    async getOrThrow(actor: Principal, id: string): Promise<UserRecord> {
      if (actor.role !== 'admin' && actor.userId !== id) throw new AppError('forbidden', 'you may only read your own user');
      const user = await prisma.user.findUnique({ where: { id }, select: userSelect });
      if (!user) throw notFound();
      return user;
    },

    async update(actor: Principal, id: string, patch: UserPatch): Promise<UserRecord> {
      const isAdmin = actor.role === 'admin';
      if (!isAdmin) {
        if (actor.userId !== id) throw new AppError('forbidden', 'you may only change your own user');
        const denied = Object.keys(patch).filter((k) => k !== 'email');
        if (denied.length) throw new AppError('field_not_allowed', `only an admin may change: ${denied.join(', ')}`);
      }
      const passwordHash = patch.password ? await hasher.hash(patch.password) : undefined;
      const losesAdmin = patch.role === 'user' || patch.disabled === true;

      // Each attempt records its events afresh: only the one that commits raises them.
      const user = await withDeadlockRetry(() => events.afterCommit((record) => prisma.$transaction(async (tx) => {
        // The target row first, under lock: what it was decides which rules apply, and a
        // concurrent change to it must not slip in between (e.g. re-enabling a disabled admin).
        const before = await lockUser(tx, id);
        if (!before) throw notFound();
        if (losesAdmin && before.role === 'admin' && !before.disabled) await assertAnotherAdmin(tx, id);
        if (patch.password && patch.password.toLowerCase() === before.username) {
          throw new AppError('password_rejected', 'the password must not be the username');
        }
        const user = await tx.user.update({
          where: { id },
          data: {
            ...(patch.email !== undefined && { email: patch.email }),
            ...(patch.role && { role: patch.role }),
            ...(patch.disabled !== undefined && { disabled: patch.disabled }),
            ...(passwordHash && { passwordHash }),
          },
          select: userSelect,
        });
        const fields = changedFields(before, patch);
        if (fields.length) record('user.updated', { userId: id, fields });
        if (passwordHash) record('user.password_changed', { userId: id, by: 'admin' });
        // Disabling or resetting the password ends the sessions in the same transaction, under
        // the lock logins take: no login can open a session in between.
        const reason = patch.disabled === true && !before.disabled ? 'user_disabled' : passwordHash ? 'password_reset' : null;
        if (reason) {
          const { count } = await tx.session.updateMany({ where: { userId: id, revokedAt: null }, data: { revokedAt: new Date(), revokedReason: reason } });
          if (count) record('session.revoked', { userId: id, sessionIds: 'all', reason });
        }
        return user;
      })));
      // Role, email and revocations are read per request through the session check: drop this process's cache.
      checker.forgetUser(id);
      return user;
    },

    /**
     * Deletes a user in three steps. First, under the lock, the last-admin rule is checked
     * and the user disabled (their sessions end): a refused deletion has touched nothing.
     * Then their reservations are released, and the user row goes. A reservation still
     * being set up meanwhile cannot become the user's: its activation needs the user (see
     * reservations), and the job releases any reservation whose user is gone.
     */
    async remove(actor: Principal, id: string): Promise<void> {
      if (actor.userId === id) throw new AppError('cannot_delete_self', 'you cannot delete your own account');
      await withDeadlockRetry(() => events.afterCommit((record) => prisma.$transaction(async (tx) => {
        const target = await lockUser(tx, id);
        if (!target) throw notFound();
        if (target.role === 'admin' && !target.disabled) await assertAnotherAdmin(tx, id);
        await tx.user.update({ where: { id }, data: { disabled: true } });
        const { count } = await tx.session.updateMany({ where: { userId: id, revokedAt: null }, data: { revokedAt: new Date(), revokedReason: 'user_deleted' } });
        if (count) record('session.revoked', { userId: id, sessionIds: 'all', reason: 'user_deleted' });
      })));
      checker.forgetUser(id);
      await releaseReservationsOf(id);
      // Sessions (and their refresh tokens) go with the user by ON DELETE CASCADE.
      const { count } = await prisma.user.deleteMany({ where: { id } });
      if (count === 1) await events.raise('user.deleted', { userId: id });
      // Evict this process's cached session checks; other processes miss the row within the cache window.
      checker.forgetUser(id);
    },
  };
}

export type UsersService = ReturnType<typeof createUsersService>;
