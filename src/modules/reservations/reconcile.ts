// Reconciliation, run by the job (and at start-up): finishes or undoes what a crashed (or
// too slow) process left. Reservations whose lease ran out while provisioning are rolled
// back, those left releasing are released, active ones whose user was deleted are ended,
// machines still holding a leftover account are cleaned again now and then, and machines
// held by no live reservation go back to the pool.
import type { PrismaClient } from '../../generated/prisma/client.js';
import { mapLimit } from '../../shared/map-limit.js';
import type { MachineState } from '../machines/state.js';
import { UNWIND_CONCURRENCY, type ReservationLog } from './model.js';
import { LEASED_STATUSES } from '../../shared/reservation-statuses.js';
import type { ReservationStatusWriter } from './status.js';
import type { Unwinder } from './unwind.js';

/** How often an offline machine with a leftover account is retried. */
const CLEANUP_RETRY_MS = 5 * 60_000;

export interface ReconcileResult {
  rolledBack: number;
  finished: number;
  freed: number;
}

export function createReconciler(deps: {
  prisma: PrismaClient;
  state: Pick<MachineState, 'freeOrphans' | 'recordCheck'>;
  status: Pick<ReservationStatusWriter, 'takeOver' | 'claimForRelease'>;
  unwinder: Unwinder;
  log: ReservationLog;
}) {
  const { prisma, state, status, unwinder, log } = deps;

  /** Takes over reservations whose lease ran out, and finishes them. */
  async function takeOverStale(): Promise<Pick<ReconcileResult, 'rolledBack' | 'finished'>> {
    const now = new Date();
    const stale = await prisma.reservation.findMany({
      where: { status: { in: [...LEASED_STATUSES] }, leaseUntil: { lt: now } },
      select: { id: true, userId: true, status: true, accountUsername: true, releaseReason: true },
    });
    let rolledBack = 0;
    let finished = 0;
    await mapLimit(stale, UNWIND_CONCURRENCY, async (r) => {
      // The query read only LEASED_STATUSES; Prisma's type cannot tell.
      const leased = { ...r, status: r.status as (typeof LEASED_STATUSES)[number] };
      const token = await status.takeOver(leased, now);
      if (!token) return;
      if (leased.status === 'provisioning') {
        await unwinder.unwind(leased, 'failed', 'interrupted while setting up (berth stopped); rolled back', token);
        rolledBack++;
      } else {
        await unwinder.unwind(leased, 'released', r.releaseReason ?? 'released', token);
        finished++;
      }
      log.info({ reservation: r.id, was: r.status }, 'reconciled an interrupted reservation');
    });
    return { rolledBack, finished };
  }

  /** Active reservations of users deleted meanwhile (one was being set up while its user went). */
  async function endOrphaned(): Promise<void> {
    const orphaned = await prisma.reservation.findMany({ where: { status: 'active', userId: null }, select: { id: true, userId: true, accountUsername: true } });
    await mapLimit(orphaned, UNWIND_CONCURRENCY, async (r) => {
      const token = await status.claimForRelease(r, 'user_deleted');
      if (token) await unwinder.unwind({ ...r, status: 'releasing' }, 'released', 'user_deleted', token);
    });
  }

  /** Offline machines that still hold an account of an ended reservation: tried again now and then. */
  async function retryCleanups(): Promise<void> {
    const pending = await prisma.machine.findMany({
      where: {
        status: 'offline',
        reservationId: { not: null },
        OR: [{ lastCheckedAt: null }, { lastCheckedAt: { lt: new Date(Date.now() - CLEANUP_RETRY_MS) } }],
      },
      take: 50,
    });
    await mapLimit(pending, UNWIND_CONCURRENCY, async (m) => {
      await unwinder.cleanupMachine(m).catch(async (err: Error) => {
        await state.recordCheck(m.id);
        log.warn({ machine: m.name, err: err.message }, 'cleanup still failing');
      });
    });
  }

  return async function reconcile(): Promise<ReconcileResult> {
    const { rolledBack, finished } = await takeOverStale();
    await endOrphaned();
    await retryCleanups();
    const freed = await state.freeOrphans();
    return { rolledBack, finished, freed };
  };
}
