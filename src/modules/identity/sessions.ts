// Sessions and their chains of refresh tokens. A session is one login; each refresh spends
// the presented token and mints its successor. Presenting a spent token means it was
// copied: the whole session is revoked, so both the thief and the owner must log in again.
import { deleteDeadSessionsBatch, lockUser } from './queries.js';
import type { EventBus } from '../../events/bus.js';
import type { PrismaClient } from '../../generated/prisma/client.js';
import { afterCursor, encodeCursor, pageOf } from '../../infra/paging.js';
import { AppError } from '../../errors/app-error.js';
import type { SessionChecker } from './session-check.js';
import { hashRefreshToken, newRefreshToken } from './tokens.js';

export type RevokeReason = 'logout' | 'revoked' | 'refresh_token_reuse';

export interface SessionMeta {
  userAgent?: string;
  ipAddress?: string;
}

export interface SessionUser {
  id: string;
  username: string;
  role: 'user' | 'admin';
}

/** A session and whose it is. */
export interface SessionRef {
  id: string;
  userId: string;
}

export interface OpenedSession {
  sessionId: string;
  sessionExpiresAt: Date;
  user: SessionUser;
  refreshToken: string;
  refreshExpiresAt: Date;
}

export interface SessionStore {
  /**
   * Opens a session, but only if the user's password hash is still `verifiedHash` and the
   * user is enabled, checked under a lock on the user row: a login that overlaps a password
   * change either lands before it (and is revoked by it) or fails.
   */
  open(user: SessionUser, meta: SessionMeta, verifiedHash: string): Promise<OpenedSession>;
  rotate(refreshToken: string): Promise<OpenedSession>;
  /** The session a refresh token belongs to, spent or not (logout by refresh token). */
  sessionOfRefreshToken(refreshToken: string): Promise<SessionRef | null>;
  /** Ends the session (raises `session.revoked` when it was live); false when it had ended already. */
  revoke(session: SessionRef, reason: RevokeReason): Promise<boolean>;
  /** Drops this process's cached session checks of a user (after revoking inside a transaction). */
  forget(userId: string): void;
  ownerOf(sessionId: string): Promise<string | null>;
  /**
   * Deletes what can no longer be used: dead sessions (revoked or expired, with their
   * refresh tokens), expired refresh tokens, and spent ones older than the reuse window
   * (a spent token presented within it still revokes its session). Returns how many rows went.
   */
  prune(): Promise<number>;
  listActive(
    userId: string,
    page: { limit: number; cursor?: string },
  ): Promise<{ items: ActiveSession[]; nextCursor: string | null }>;
}

export interface ActiveSession {
  id: string;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  userAgent: string | null;
  ipAddress: string | null;
}

const invalidRefresh = () => new AppError('invalid_refresh_token', 'the refresh token is unknown, expired or revoked');

function truncate(value: string | undefined, max: number): string | null {
  return value ? value.slice(0, max) : null;
}


/** Rows one prune statement deletes at most: short statements, short locks. */
const PRUNE_BATCH = 5000;

export function createSessionStore(
  prisma: PrismaClient,
  checker: SessionChecker,
  ttl: { refreshIdleTtlSeconds: number; maxTtlSeconds: number; reuseWindowSeconds: number },
  events: Pick<EventBus, 'raise'>,
): SessionStore {
  const refreshExpiry = (now: number, sessionExpiresAt: Date) =>
    new Date(Math.min(now + ttl.refreshIdleTtlSeconds * 1000, sessionExpiresAt.getTime()));

  /** Ends one live session, and says so once it has: false when it had ended already. */
  async function revokeLive(session: SessionRef, reason: RevokeReason): Promise<boolean> {
    const { count } = await prisma.session.updateMany({
      where: { id: session.id, revokedAt: null },
      data: { revokedAt: new Date(), revokedReason: reason },
    });
    checker.forgetSession(session.id);
    if (count === 1) await events.raise('session.revoked', { userId: session.userId, sessionIds: [session.id], reason });
    return count === 1;
  }

  return {
    async open(user, meta, verifiedHash) {
      const now = Date.now();
      const sessionExpiresAt = new Date(now + ttl.maxTtlSeconds * 1000);
      const refresh = newRefreshToken();
      const refreshExpiresAt = refreshExpiry(now, sessionExpiresAt);
      const session = await prisma.$transaction(async (tx) => {
        const row = await lockUser(tx, user.id);
        if (!row || row.passwordHash !== verifiedHash) {
          throw new AppError('invalid_credentials', 'username or password is wrong');
        }
        if (row.disabled) throw new AppError('account_disabled', 'this account is disabled');
        return tx.session.create({
          data: {
            userId: user.id,
            expiresAt: sessionExpiresAt,
            userAgent: truncate(meta.userAgent, 255),
            ipAddress: truncate(meta.ipAddress, 45),
            refreshTokens: { create: { tokenHash: refresh.hash, expiresAt: refreshExpiresAt } },
          },
          select: { id: true },
        });
      });
      return { sessionId: session.id, sessionExpiresAt, user, refreshToken: refresh.token, refreshExpiresAt };
    },

    async rotate(presented) {
      const found = await prisma.refreshToken.findUnique({
        where: { tokenHash: hashRefreshToken(presented) },
        select: {
          id: true,
          expiresAt: true,
          spentAt: true,
          session: {
            select: {
              id: true,
              expiresAt: true,
              revokedAt: true,
              user: { select: { id: true, username: true, role: true, disabled: true } },
            },
          },
        },
      });
      if (!found) throw invalidRefresh();
      const { session } = found;
      const reuse = async () => {
        await revokeLive({ id: session.id, userId: session.user.id }, 'refresh_token_reuse');
        return new AppError(
          'refresh_token_reused',
          'this refresh token was already used; the session has been revoked, log in again',
        );
      };
      if (found.spentAt) throw await reuse();
      const now = Date.now();
      if (session.revokedAt || session.expiresAt.getTime() <= now || found.expiresAt.getTime() <= now || session.user.disabled) {
        throw invalidRefresh();
      }

      const next = newRefreshToken();
      const refreshExpiresAt = refreshExpiry(now, session.expiresAt);
      const won = await prisma.$transaction(async (tx) => {
        // Conditional spend: of two concurrent refreshes with one token, exactly one wins.
        const spent = await tx.refreshToken.updateMany({ where: { id: found.id, spentAt: null }, data: { spentAt: new Date(now) } });
        if (spent.count !== 1) return false;
        await tx.refreshToken.create({ data: { sessionId: session.id, tokenHash: next.hash, expiresAt: refreshExpiresAt } });
        await tx.session.update({ where: { id: session.id }, data: { lastUsedAt: new Date(now) } });
        return true;
      });
      if (!won) throw await reuse();
      const { id, username, role } = session.user;
      return {
        sessionId: session.id,
        sessionExpiresAt: session.expiresAt,
        user: { id, username, role },
        refreshToken: next.token,
        refreshExpiresAt,
      };
    },

    async sessionOfRefreshToken(presented) {
      const found = await prisma.refreshToken.findUnique({
        where: { tokenHash: hashRefreshToken(presented) },
        select: { session: { select: { id: true, userId: true } } },
      });
      return found?.session ?? null;
    },

    revoke: revokeLive,

    forget(userId) {
      checker.forgetUser(userId);
    },

    async ownerOf(sessionId) {
      const s = await prisma.session.findUnique({ where: { id: sessionId }, select: { userId: true } });
      return s?.userId ?? null;
    },

    async prune() {
      const now = new Date();
      const spentBefore = new Date(now.getTime() - ttl.reuseWindowSeconds * 1000);
      let total = 0;
      for (;;) {
        const deleted = await deleteDeadSessionsBatch(prisma, now, spentBefore, PRUNE_BATCH);
        total += deleted;
        if (deleted === 0) return total;
      }
    },

    async listActive(userId, { limit, cursor }) {
      const rows = await prisma.session.findMany({
        where: { userId, revokedAt: null, expiresAt: { gt: new Date() }, ...afterCursor(cursor) },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: limit + 1,
        select: { id: true, createdAt: true, lastUsedAt: true, expiresAt: true, userAgent: true, ipAddress: true },
      });
      return pageOf(rows, limit, encodeCursor);
    },
  };
}
