// Reservations: N machines for a person for a time, with an account on each. This file
// wires the parts and answers the routes; each part has a file of its own:
//   allocation.ts    decides a request in one transaction: claimed now (all machines or
//                    none), queued, booked, or refused — placed by planner.ts on the
//                    pool's windows (windows.ts)
//   provisioning.ts  answers a request: claimed now, the accounts are made at once
//   setup.ts         creates the accounts over SSH and activates, or undoes it all
//   scheduler.ts     promotes the queue, starts bookings, re-plans or fails broken ones (a job)
//   idempotency.ts   the same Idempotency-Key and body give the same outcome
//   status.ts        the one writer of a reservation's status and lease: its transitions
//   queries.ts       the SQL: the view, the machines a user holds, allocation's reads
//   unwind.ts        ending a reservation: accounts removed, machines back or offline
//   reconcile.ts     finishing what a crashed process left (run by the job)
// A process works on a reservation only after winning a conditional update, so each one
// is released exactly once even with several processes on one database.
import type { Database } from '../../infra/database.js';
import { AppError } from '../../errors/app-error.js';
import type { EventBus } from '../../events/bus.js';
import { afterCursorSql, encodeCursor, pageOf } from '../../infra/paging.js';
import { whereAll } from '../../infra/sql-where.js';
import { mapLimit } from '../../shared/map-limit.js';
import type { Principal } from '../../shared/principal.js';
import type { MachineAccess, MachineRow } from '../machines/access.js';
import type { SecretBox } from '../../infra/secret-box.js';
import type { MachineState } from '../machines/state.js';
import { createAllocator } from './allocation.js';
import { createDecisions } from './decisions.js';
import { createRequestHasher } from './idempotency.js';
import { UNWIND_CONCURRENCY, type ReservationLog, type ReservationPolicy } from './model.js';
import { createProvisioner } from './provisioning.js';
import { nextBookingStart, reservationById, reservationPage, takeSealedPassword, type ReservationView } from './queries.js';
import { createReconciler } from './reconcile.js';
import { createScheduler } from './scheduler.js';
import { openPassword } from './sealed-account.js';
import { createAccountSetUp } from './setup.js';
import { createReservationStatus } from './status.js';
import { createUnwinder } from './unwind.js';

export type { CreateReservationInput, ReservationPolicy, ReservationRow } from './model.js';

export interface ReservationsDeps {
  prisma: Database;
  access: MachineAccess;
  state: MachineState;
  /** Seals the secrets of accounts made later (queued and booked reservations). */
  secretBox: SecretBox;
  /** Where the reservations' status changes are raised, once committed. */
  events: Pick<EventBus, 'raise' | 'afterCommit'>;
  policy: ReservationPolicy;
  /** Names this process in leases: who is working on a reservation. */
  instanceId: string;
  /** Keys the HMAC of idempotent request bodies (which may hold a password). */
  requestHashKey: Buffer;
  /** This host's name, and how long a VM host may stay silent before it counts as down. */
  node: string;
  vmHostDownAfterMs: number;
  /** Resets `machine` when it is a VM (true); false for any other machine (vms service). */
  recycle(machine: MachineRow, reservationId: string): Promise<boolean>;
  log: ReservationLog;
}

const notFound = () => new AppError('reservation_not_found', 'no such reservation');

export function createReservationsService(deps: ReservationsDeps) {
  const { prisma, access, state, events, policy, recycle, log } = deps;
  const status = createReservationStatus({ prisma, events, policy, instanceId: deps.instanceId, log });
  const unwinder = createUnwinder({ prisma, access, state, status, recycle, log });
  const requestHash = createRequestHasher(deps.requestHashKey);
  const where = { node: deps.node, vmHostDownAfterMs: deps.vmHostDownAfterMs };
  const decide = createDecisions(prisma, events);
  const allocate = createAllocator({ decide, state, status, policy, requestHash, ...where });
  const setUp = createAccountSetUp({ prisma, access, state, status, unwinder });
  const create = createProvisioner({ prisma, secretBox: deps.secretBox, policy, allocate, setUp, requestHash });
  const schedule = createScheduler({ prisma, decide, state, status, setUp, secretBox: deps.secretBox, policy, ...where, log });
  const reconcile = createReconciler({ prisma, state, status, unwinder, log });
  const { unwind, cleanupMachine } = unwinder;

  /** Owner or admin see it; anyone else is told it does not exist. */
  async function visibleOrThrow(actor: Principal, id: string): Promise<ReservationView> {
    const r = await reservationById(prisma, id);
    if (!r || (r.userId !== actor.userId && actor.role !== 'admin')) throw notFound();
    return r;
  }

  return {
    cleanupMachine,
    reconcile,

    /**
     * All-or-nothing: claims the machines, creates the account on each in parallel, and
     * either activates the reservation or undoes everything and says which machine failed.
     */
    create,

    /** The scheduler's tick (its job's). */
    schedule,

    /**
     * The reservation, and — on its owner's first read once active — the password berth
     * generated for a queued or booked one (shown once, as at once for one made at once).
     */
    async getOrThrow(actor: Principal, id: string): Promise<{ reservation: ReservationView; password: string | undefined }> {
      const reservation = await visibleOrThrow(actor, id);
      const sealed = reservation.status === 'active' && reservation.userId === actor.userId ? await takeSealedPassword(prisma, id) : null;
      return { reservation, password: sealed === null ? undefined : openPassword(deps.secretBox, sealed) };
    },

    async list(actor: Principal, q: { all?: boolean; user?: string; status?: ReservationView['status']; limit: number; cursor?: string }) {
      // A user naming themselves asks for what they see anyway; only someone else's list is an admin's.
      const ofOther = !!q.user && q.user !== actor.username;
      if ((q.all || ofOther) && actor.role !== 'admin') {
        throw new AppError('admin_required', 'only an admin may list other people’s reservations');
      }
      const where = whereAll([
        q.all ? null : ofOther ? ['r.owner_username = ?', q.user] : ['r.user_id = ?', actor.userId],
        q.status ? ['r.status = ?', q.status] : null,
        afterCursorSql(q.cursor, 'r'),
      ]);
      return pageOf(await reservationPage(prisma, where, q.limit + 1), q.limit, encodeCursor);
    },

    async extend(actor: Principal, id: string, minutes: number) {
      const r = await visibleOrThrow(actor, id);
      if (r.status !== 'active' || !r.expiresAt) {
        throw new AppError('reservation_not_active', `the reservation is ${r.status}; only an active one can be extended`);
      }
      const expiresAt = new Date(r.expiresAt);
      if (expiresAt.getTime() <= Date.now()) {
        throw new AppError('reservation_expired', 'the reservation has run out and is being released');
      }
      const next = new Date(expiresAt.getTime() + minutes * 60_000);
      if (next.getTime() > Date.parse(r.maxExpiresAt)) {
        throw new AppError('exceeds_max_duration', `a reservation may not run past ${r.maxExpiresAt} (${policy.maxTotalMinutes} minutes in all)`, { max_expires_at: r.maxExpiresAt });
      }
      // Under the planner row: no booking can be made on these machines between the check and the update.
      const extended = await decide(async (tx, record) => {
        const booked = await nextBookingStart(tx, id, expiresAt);
        if (booked && next > booked) {
          throw new AppError('booking_conflict', `a machine of this reservation is booked from ${booked.toISOString()}; it may run until then`, { latest_end: booked.toISOString() });
        }
        return status.extend({ tx, record }, { id, userId: r.userId, expiresAt }, next);
      });
      if (!extended) throw new AppError('reservation_changed', 'the reservation changed meanwhile; try again');
      return (await reservationById(prisma, id))!;
    },

    /** Early release by the owner or an admin (a queued request or a booking is cancelled); done when it returns. */
    async release(actor: Principal, id: string) {
      const r = await visibleOrThrow(actor, id);
      if (r.status === 'queued' || r.status === 'scheduled') {
        const reason = actor.userId === r.userId ? 'cancelled' : 'cancelled_by_admin';
        // Lost to the scheduler (it started meanwhile) or another cancel: the read below says what it is now.
        await status.cancel({ id, userId: r.userId, status: r.status }, reason);
        return (await reservationById(prisma, id))!;
      }
      if (r.status === 'provisioning') {
        throw new AppError('reservation_provisioning', 'the reservation is still being set up; release it once it is active');
      }
      const reason = actor.userId === r.userId ? 'released' : 'released_by_admin';
      const token = r.status === 'active' ? await status.claimForRelease(r, reason) : null;
      if (token) await unwind({ ...r, status: 'releasing' }, 'released', reason, token);
      return (await reservationById(prisma, id))!;
    },

    /** A user being deleted: their queued requests and bookings are withdrawn, their active reservations released. */
    async endAllOf(userId: string) {
      const waiting = await prisma.reservation.findMany({ where: { userId, status: { in: ['queued', 'scheduled'] } }, select: { id: true, userId: true, status: true } });
      for (const r of waiting) await status.cancel({ ...r, status: r.status as 'queued' | 'scheduled' }, 'user_deleted');
      return this.releaseAll({ userId });
    },

    /** Releases every active reservation (admin), a few at a time. */
    async releaseAll(filter: { userId?: string } = {}) {
      const active = await prisma.reservation.findMany({ where: { status: 'active', ...filter }, select: { id: true, userId: true, accountUsername: true } });
      let released = 0;
      await mapLimit(active, UNWIND_CONCURRENCY, async (r) => {
        const token = await status.claimForRelease(r, 'released_by_admin');
        if (token) {
          await unwind({ ...r, status: 'releasing' }, 'released', 'released_by_admin', token);
          released++;
        }
      });
      return released;
    },

    /** The expiry job's work: release what has run out. Returns how many this process released. */
    async expireDue(): Promise<number> {
      const due = await prisma.reservation.findMany({
        where: { status: 'active', expiresAt: { lte: new Date() } },
        select: { id: true, userId: true, accountUsername: true },
        take: 200,
      });
      let released = 0;
      await mapLimit(due, UNWIND_CONCURRENCY, async (r) => {
        const token = await status.claimForRelease(r, 'expired', true);
        if (token) {
          await unwind({ ...r, status: 'releasing' }, 'released', 'expired', token);
          released++;
        }
      });
      return released;
    },
  };
}

export type ReservationsService = ReturnType<typeof createReservationsService>;
