// Identity rules: registration, login, refresh, logout, password change, own sessions.
// No HTTP here: routes translate requests into these calls and results into responses.
// What people do with their accounts is raised as events once it has committed
// (registered, logged in or failed to, changed their password); the session store raises
// the revocations it makes.
import { lockLiveSessions, lockUser } from './queries.js';
import type { EventBus } from '../../events/bus.js';
import { isUniqueViolation } from '../../infra/database.js';
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import type { PasswordHasher } from './passwords.js';
import { sessionOf, type Principal } from '../../shared/principal.js';
import type { OpenedSession, SessionMeta, SessionRef, SessionStore } from './sessions.js';
import type { TokenIssuer } from './tokens.js';
import { USERNAME_PATTERN } from '../../shared/usernames.js';

export interface TokenSet {
  accessToken: string;
  expiresIn: number;
  refreshToken: string;
  refreshExpiresIn: number;
  sessionId: string;
}

export type UserRecord = Prisma.UserGetPayload<{
  select: { id: true; username: true; email: true; role: true; disabled: true; createdAt: true; updatedAt: true };
}>;

export const userSelect = {
  id: true,
  username: true,
  email: true,
  role: true,
  disabled: true,
  createdAt: true,
  updatedAt: true,
} as const satisfies Prisma.UserSelect;

export interface IdentityDeps {
  prisma: PrismaClient;
  hasher: PasswordHasher;
  issuer: TokenIssuer;
  sessions: SessionStore;
  registration: 'open' | 'closed';
  events: Pick<EventBus, 'raise' | 'afterCommit'>;
}

const invalidCredentials = () => new AppError('invalid_credentials', 'username or password is wrong');

/** The refusals of a login that are a failed attempt (not a throttle, nor a fault), by the event's reason. */
const LOGIN_FAILURES: Partial<Record<string, 'bad_credentials' | 'disabled'>> = {
  invalid_credentials: 'bad_credentials',
  account_disabled: 'disabled',
};

export function createIdentityService({ prisma, hasher, issuer, sessions, registration, events }: IdentityDeps) {
  function tokenSet(opened: OpenedSession): TokenSet {
    const { user } = opened;
    const access = issuer.issueAccessToken(
      { sub: user.id, sid: opened.sessionId, username: user.username, role: user.role },
      opened.sessionExpiresAt,
    );
    return {
      accessToken: access.token,
      expiresIn: access.expiresIn,
      refreshToken: opened.refreshToken,
      refreshExpiresIn: Math.round((opened.refreshExpiresAt.getTime() - Date.now()) / 1000),
      sessionId: opened.sessionId,
    };
  }

  async function createUser(input: { username: string; password: string; email?: string | null; role?: 'user' | 'admin' }): Promise<UserRecord> {
    const passwordHash = await hasher.hash(input.password);
    try {
      return await prisma.user.create({
        data: { username: input.username, email: input.email ?? null, passwordHash, role: input.role ?? 'user' },
        select: userSelect,
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('username_taken', `the username ${input.username} is taken`);
      throw err;
    }
  }

  /** Same answer and the same work (one argon2 verify) for an unknown user and a wrong password. */
  async function logIn(name: string, password: string, meta: SessionMeta): Promise<OpenedSession> {
    // Only exact, canonical names are looked up (see usernames.ts on the collation).
    const user = USERNAME_PATTERN.test(name)
      ? await prisma.user.findUnique({
          where: { username: name },
          select: { id: true, username: true, role: true, disabled: true, passwordHash: true },
        })
      : null;
    if (!user || user.username !== name) {
      await hasher.verifyDummy(password);
      throw invalidCredentials();
    }
    const { ok, needsRehash } = await hasher.verify(user.passwordHash, password);
    if (!ok) throw invalidCredentials();
    if (user.disabled) throw new AppError('account_disabled', 'this account is disabled');
    let verifiedHash = user.passwordHash;
    if (needsRehash) {
      const upgraded = await hasher.hash(password);
      // Only over the hash just verified: never undo a password change that landed meanwhile.
      const { count } = await prisma.user.updateMany({ where: { id: user.id, passwordHash: user.passwordHash }, data: { passwordHash: upgraded } });
      if (count === 1) verifiedHash = upgraded;
    }
    return sessions.open({ id: user.id, username: user.username, role: user.role }, meta, verifiedHash);
  }

  return {
    createUser,

    async register(input: { username: string; password: string; email?: string }): Promise<UserRecord> {
      if (registration === 'closed') {
        throw new AppError('registration_closed', 'registration is closed on this server; ask an administrator for an account');
      }
      const user = await createUser(input);
      await events.raise('user.registered', { userId: user.id, username: user.username });
      return user;
    },

    /** A login: tokens of a new session. Succeeded or failed, it is raised (with the name as typed, canonical; never the password). */
    async login(username: string, password: string, meta: SessionMeta): Promise<TokenSet> {
      const name = username.trim().toLowerCase();
      let opened: OpenedSession;
      try {
        opened = await logIn(name, password, meta);
      } catch (err) {
        const reason = err instanceof AppError ? LOGIN_FAILURES[err.code] : undefined;
        if (reason) await events.raise('user.login_failed', { username: USERNAME_PATTERN.test(name) ? name : null, reason });
        throw err;
      }
      await events.raise('user.login_succeeded', { userId: opened.user.id, username: opened.user.username, sessionId: opened.sessionId });
      return tokenSet(opened);
    },

    async refresh(refreshToken: string): Promise<TokenSet> {
      return tokenSet(await sessions.rotate(refreshToken));
    },

    async logoutSession(session: SessionRef): Promise<void> {
      await sessions.revoke(session, 'logout');
    },

    async logoutWithRefreshToken(refreshToken: string): Promise<void> {
      const session = await sessions.sessionOfRefreshToken(refreshToken);
      if (!session) throw new AppError('invalid_refresh_token', 'the refresh token is unknown');
      await sessions.revoke(session, 'logout');
    },

    async changePassword(
      principal: Principal,
      input: { currentPassword: string; newPassword: string; killSessions: boolean },
    ): Promise<{ sessionsRevoked: number }> {
      const user = await prisma.user.findUnique({ where: { id: principal.userId }, select: { passwordHash: true } });
      if (!user) throw new AppError('session_revoked', 'this account no longer exists');
      const { ok } = await hasher.verify(user.passwordHash, input.currentPassword);
      if (!ok) throw new AppError('invalid_current_password', 'the current password is wrong');
      if (input.newPassword.toLowerCase() === principal.username) {
        throw new AppError('password_rejected', 'the new password must not be the username');
      }
      const newHash = await hasher.hash(input.newPassword);
      const { userId } = principal;
      const current = sessionOf(principal);
      // The new hash and the revocations commit together, under the lock logins take
      // (sessions.open): no login with the old password can slip in between.
      const sessionsRevoked = await events.afterCommit((record) => prisma.$transaction(async (tx) => {
        const row = await lockUser(tx, userId);
        if (!row) throw new AppError('session_revoked', 'this account no longer exists');
        if (row.passwordHash !== user.passwordHash) {
          throw new AppError('password_changed', 'the password was changed meanwhile; try again');
        }
        await tx.user.update({ where: { id: userId }, data: { passwordHash: newHash } });
        record('user.password_changed', { userId, by: 'self' });
        if (!input.killSessions) return 0;
        // Which ones, for the event: locked, so that a logout meanwhile neither ends one of
        // them twice nor is missed (no session opens meanwhile: the user's row is locked).
        const others = await lockLiveSessions(tx, userId, current);
        if (!others.length) return 0;
        const { count } = await tx.session.updateMany({
          where: { id: { in: others }, revokedAt: null },
          data: { revokedAt: new Date(), revokedReason: 'password_change' },
        });
        record('session.revoked', { userId, sessionIds: others, reason: 'password_change' });
        return count;
      }));
      if (sessionsRevoked) sessions.forget(principal.userId);
      return { sessionsRevoked };
    },

    listSessions: sessions.listActive,

    /** Owner or admin; anyone else is told the session does not exist. */
    async revokeSession(actor: Principal, sessionId: string): Promise<void> {
      const owner = await sessions.ownerOf(sessionId);
      if (!owner || (owner !== actor.userId && actor.role !== 'admin')) {
        throw new AppError('session_not_found', 'no such session');
      }
      await sessions.revoke({ id: sessionId, userId: owner }, 'revoked');
    },
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
