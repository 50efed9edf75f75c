// Identity rules: registration, login, refresh, logout, password change, own sessions.
// No HTTP here: routes translate requests into these calls and results into responses.
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import { problems } from '../../plugins/problem.js';
import type { PasswordHasher } from './passwords.js';
import type { Principal } from './session-check.js';
import type { OpenedSession, SessionMeta, SessionStore } from './sessions.js';
import type { TokenIssuer } from './tokens.js';

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
}

const invalidCredentials = () => problems.unauthorized('invalid_credentials', 'username or password is wrong');

export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

export function createIdentityService({ prisma, hasher, issuer, sessions, registration }: IdentityDeps) {
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

  return {
    async createUser(input: { username: string; password: string; email?: string | null; role?: 'user' | 'admin' }): Promise<UserRecord> {
      const passwordHash = await hasher.hash(input.password);
      try {
        return await prisma.user.create({
          data: { username: input.username, email: input.email ?? null, passwordHash, role: input.role ?? 'user' },
          select: userSelect,
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw problems.conflict('username_taken', `the username ${input.username} is taken`);
        throw err;
      }
    },

    async register(input: { username: string; password: string; email?: string }): Promise<UserRecord> {
      if (registration === 'closed') {
        throw problems.forbidden('registration_closed', 'registration is closed on this server; ask an administrator for an account');
      }
      return this.createUser(input);
    },

    /** Same answer and the same work (one argon2 verify) for an unknown user and a wrong password. */
    async login(username: string, password: string, meta: SessionMeta): Promise<TokenSet> {
      const user = await prisma.user.findUnique({
        where: { username: username.trim().toLowerCase() },
        select: { id: true, username: true, role: true, disabled: true, passwordHash: true },
      });
      if (!user) {
        await hasher.verifyDummy(password);
        throw invalidCredentials();
      }
      const { ok, needsRehash } = await hasher.verify(user.passwordHash, password);
      if (!ok) throw invalidCredentials();
      if (user.disabled) throw problems.forbidden('account_disabled', 'this account is disabled');
      if (needsRehash) {
        await prisma.user.update({ where: { id: user.id }, data: { passwordHash: await hasher.hash(password) } });
      }
      return tokenSet(await sessions.open({ id: user.id, username: user.username, role: user.role }, meta));
    },

    async refresh(refreshToken: string): Promise<TokenSet> {
      return tokenSet(await sessions.rotate(refreshToken));
    },

    async logoutSession(sessionId: string): Promise<void> {
      await sessions.revoke(sessionId, 'logout');
    },

    async logoutWithRefreshToken(refreshToken: string): Promise<void> {
      const sessionId = await sessions.sessionOfRefreshToken(refreshToken);
      if (!sessionId) throw problems.unauthorized('invalid_refresh_token', 'the refresh token is unknown');
      await sessions.revoke(sessionId, 'logout');
    },

    async changePassword(
      principal: Principal,
      input: { currentPassword: string; newPassword: string; killSessions: boolean },
    ): Promise<{ sessionsRevoked: number }> {
      const user = await prisma.user.findUniqueOrThrow({ where: { id: principal.userId }, select: { passwordHash: true } });
      const { ok } = await hasher.verify(user.passwordHash, input.currentPassword);
      if (!ok) throw problems.forbidden('invalid_current_password', 'the current password is wrong');
      if (input.newPassword.toLowerCase() === principal.username) {
        throw problems.unprocessable('password_rejected', 'the new password must not be the username');
      }
      await prisma.user.update({ where: { id: principal.userId }, data: { passwordHash: await hasher.hash(input.newPassword) } });
      const sessionsRevoked = input.killSessions
        ? await sessions.revokeAllForUser(principal.userId, 'password_change', principal.sessionId)
        : 0;
      return { sessionsRevoked };
    },

    listSessions: sessions.listActive,

    /** Owner or admin; anyone else is told the session does not exist. */
    async revokeSession(actor: Principal, sessionId: string): Promise<void> {
      const owner = await sessions.ownerOf(sessionId);
      if (!owner || (owner !== actor.userId && actor.role !== 'admin')) {
        throw problems.notFound('session_not_found', 'no such session');
      }
      await sessions.revoke(sessionId, 'revoked');
    },
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
