// The per-request half of revocation: an access token is honoured only while its session
// is live and its user exists and is enabled. One primary-key lookup answers that (and
// yields the user's current role and email); a positive answer is remembered for
// `cacheMs` so hot paths do not hit the database on every request. Revocations made in
// this process evict the entry at once; other processes see them within `cacheMs`.
// After half of `cacheMs` a request still gets the remembered answer but starts one
// background re-check, so steady traffic never waits on the database.
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { Principal } from '../../shared/principal.js';

export type { Principal };


export interface SessionChecker {
  check(sessionId: string, userId: string): Promise<Principal | null>;
  forgetSession(sessionId: string): void;
  forgetUser(userId: string): void;
}

const MAX_ENTRIES = 50_000;

export function createSessionChecker(prisma: PrismaClient, opts: { cacheMs: number }): SessionChecker {
  const cache = new Map<string, { principal: Principal; refreshAt: number; until: number }>();
  // Concurrent misses for one session share one query instead of each asking the database.
  const inFlight = new Map<string, Promise<Principal | null>>();
  // Bumped by every revocation. A lookup that overlapped one may answer its own request
  // (it began before the revocation) but must not cache what it read.
  let generation = 0;

  async function lookup(sessionId: string): Promise<Principal | null> {
    const startedAt = generation;
    const session = await prisma.session.findUnique({
      where: { id: sessionId },
      select: {
        revokedAt: true,
        expiresAt: true,
        user: { select: { id: true, username: true, email: true, role: true, disabled: true } },
      },
    });
    const now = Date.now();
    if (!session || session.revokedAt || session.expiresAt.getTime() <= now || session.user.disabled) {
      cache.delete(sessionId);
      return null;
    }
    const { user } = session;
    const principal: Principal = {
      userId: user.id,
      username: user.username,
      email: user.email,
      role: user.role,
      authenticatedBy: { kind: 'session', sessionId },
    };
    if (opts.cacheMs > 0 && startedAt === generation) {
      if (cache.size >= MAX_ENTRIES) cache.clear();
      const until = Math.min(now + opts.cacheMs, session.expiresAt.getTime());
      cache.set(sessionId, { principal, refreshAt: now + opts.cacheMs / 2, until });
    }
    return principal;
  }

  function coalescedLookup(sessionId: string): Promise<Principal | null> {
    let pending = inFlight.get(sessionId);
    if (!pending) {
      const mine: Promise<Principal | null> = lookup(sessionId).finally(() => {
        if (inFlight.get(sessionId) === mine) inFlight.delete(sessionId);
      });
      pending = mine;
      inFlight.set(sessionId, pending);
    }
    return pending;
  }

  return {
    async check(sessionId, userId) {
      const hit = cache.get(sessionId);
      const now = Date.now();
      let principal: Principal | null;
      if (hit && hit.until > now) {
        principal = hit.principal;
        // A failed background re-check changes nothing: the entry still expires at `until`.
        if (now >= hit.refreshAt && !inFlight.has(sessionId)) coalescedLookup(sessionId).catch(() => {});
      } else {
        principal = await coalescedLookup(sessionId);
      }
      return principal && principal.userId === userId ? principal : null;
    },
    forgetSession(sessionId) {
      generation++;
      cache.delete(sessionId);
      inFlight.delete(sessionId);
    },
    forgetUser(userId) {
      generation++;
      for (const [sid, entry] of cache) if (entry.principal.userId === userId) cache.delete(sid);
      inFlight.clear();
    },
  };
}
