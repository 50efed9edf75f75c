// Leases: a process works on a reservation (setting it up, ending it) only under a lease
// it won by a conditional update, renewed while the work runs. A lease that runs out means
// its process crashed (or the database was away): another may take the reservation over.
import { randomUUID } from 'node:crypto';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { ReservationLog, ReservationPolicy } from './model.js';

export function createLeases(deps: {
  prisma: PrismaClient;
  policy: Pick<ReservationPolicy, 'leaseSeconds'>;
  /** Names this process in leases: who is working on a reservation. */
  instanceId: string;
  log: Pick<ReservationLog, 'warn'>;
}) {
  const { prisma, policy, instanceId, log } = deps;
  const leaseUntil = () => new Date(Date.now() + policy.leaseSeconds * 1000);
  /** Every claim gets its own token: a takeover by this same process is still a different owner. */
  const newLease = () => `${instanceId}/${randomUUID().slice(0, 8)}`;

  return {
    leaseUntil,
    newLease,

    /** Keeps the lease alive while `work` runs, so a slow machine is not mistaken for a crash. */
    async underLease<T>(id: string, token: string, work: () => Promise<T>): Promise<T> {
      const timer = setInterval(() => {
        void prisma.reservation
          .updateMany({ where: { id, leaseOwner: token }, data: { leaseUntil: leaseUntil() } })
          .catch((err: unknown) => log.warn({ err, reservation: id }, 'could not renew a lease'));
      }, (policy.leaseSeconds * 1000) / 3);
      try {
        return await work();
      } finally {
        clearInterval(timer);
      }
    },

    /** Claims an active reservation for release; the lease token when this process won it. */
    async claimForRelease(id: string, reason: string, onlyIfExpired = false): Promise<string | null> {
      const token = newLease();
      const { count } = await prisma.reservation.updateMany({
        where: { id, status: 'active', ...(onlyIfExpired && { expiresAt: { lte: new Date() } }) },
        data: { status: 'releasing', releaseReason: reason, leaseOwner: token, leaseUntil: leaseUntil() },
      });
      return count === 1 ? token : null;
    },
  };
}

export type Leases = ReturnType<typeof createLeases>;
