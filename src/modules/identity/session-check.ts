// The per-request half of revocation: an access token is honoured only while its session
// is live and its user exists and is enabled. One primary-key lookup answers that (and
// yields the user's current role and email); a positive answer is remembered for
// `cacheMs` so hot paths do not hit the database on every request. Revocations made in
// this process evict the entry at once; other processes see them within `cacheMs`.
import type { PrismaClient } from '../../generated/prisma/client.js';

export interface Principal {
  userId: string;
  username: string;
  email: string | null;
  role: 'user' | 'admin';
  sessionId: string;
}

export interface SessionChecker {
  check(sessionId: string, userId: string): Promise<Principal | null>;
  forgetSession(sessionId: string): void;
  forgetUser(userId: string): void;
}

const MAX_ENTRIES = 50_000;

export function createSessionChecker(prisma: PrismaClient, opts: { cacheMs: number }): SessionChecker {
  const cache = new Map<string, { principal: Principal; until: number }>();

  return {
    async check(sessionId, userId) {
      const now = Date.now();
      const hit = cache.get(sessionId);
      if (hit && hit.until > now) return hit.principal.userId === userId ? hit.principal : null;

      const session = await prisma.session.findUnique({
        where: { id: sessionId },
        select: {
          revokedAt: true,
          expiresAt: true,
          user: { select: { id: true, username: true, email: true, role: true, disabled: true } },
        },
      });
      if (!session || session.revokedAt || session.expiresAt.getTime() <= now || session.user.disabled) {
        cache.delete(sessionId);
        return null;
      }
      if (session.user.id !== userId) return null;
      const { user } = session;
      const principal: Principal = { userId: user.id, username: user.username, email: user.email, role: user.role, sessionId };
      if (opts.cacheMs > 0) {
        if (cache.size >= MAX_ENTRIES) cache.clear();
        cache.set(sessionId, { principal, until: Math.min(now + opts.cacheMs, session.expiresAt.getTime()) });
      }
      return principal;
    },
    forgetSession(sessionId) {
      cache.delete(sessionId);
    },
    forgetUser(userId) {
      for (const [sid, entry] of cache) if (entry.principal.userId === userId) cache.delete(sid);
    },
  };
}
