// A reservation's status: the only code that writes it, with the lease that says which
// process works on the reservation (lease_owner, lease_until), its times and its reasons.
// Every change is a named transition and a conditional update that states its rule once:
// from which status, under which lease, and what else must hold. A process works on a
// reservation only after its own update won, so each is set up, and ended, exactly once,
// with any number of berth processes on one database.
//
//   (none) ──open (allocation's transaction)──▶ provisioning ─┬─activate (user still there)──▶ active
//                                                              └─finish──▶ failed
//   (none) ──openQueued──▶ queued ──promote (the scheduler's transaction)──▶ provisioning
//                            ├──expireWait (its wait ran out)──▶ released "expired"
//                            └──cancel──▶ released "cancelled"
//   (none) ──openScheduled──▶ scheduled ──promote (its start has come)──▶ provisioning
//                               ├──cancel──▶ released "cancelled"
//                               └──failBooking (a machine went and none replaces it)──▶ failed
//   active ──extend (compare-and-set on the expiry)──▶ active
//   active ──claimForRelease──▶ releasing ──finish──▶ released
//   provisioning|releasing (lease ran out) ──takeOver──▶ the same, under a new lease
//   under a lease ──renewLease──▶ the lease runs on (underLease, while the work runs)
//
// Every reservation is a window of time, fixed when it is planned: `expires_at` is set when
// it is opened (now + duration, or a booking's start + duration) and activation keeps it, so
// no window ever grows into a booking behind it while its accounts are being made.
//
// A lease that runs out means its process crashed (or the database was away): another
// process may take the reservation over. Each transition that changes the status raises
// `reservation.changed` once it has committed, `extend` raises `reservation.extended`;
// nothing is raised for an update that did not apply, nor for an allocation rolled back.
import { randomUUID } from 'node:crypto';
import type { Prisma, PrismaClient } from '../../generated/prisma/client.js';
import type { ReservationStatus } from '../../generated/prisma/enums.js';
import type { EventBus, InTransaction, RecordEvent } from '../../events/bus.js';
import { ENDED_STATUSES, LEASED_STATUSES, LIVE_STATUSES } from '../../shared/reservation-statuses.js';
import { failureReasonFor } from './failure-reasons.js';
import type { MachineAsk, ReservationLog, ReservationPolicy } from './model.js';

// The status sets are the schema's statuses (checked here, where they are written).
LIVE_STATUSES satisfies readonly ReservationStatus[];
ENDED_STATUSES satisfies readonly ReservationStatus[];
type Leased = (typeof LEASED_STATUSES)[number];
type Ended = (typeof ENDED_STATUSES)[number];

/** What the events of a reservation name: the reservation and its owner (null once the user is gone). */
export interface ReservationRef {
  id: string;
  userId: string | null;
}

export interface NewReservation {
  userId: string;
  ownerUsername: string;
  accountUsername: string;
  durationMinutes: number;
  idempotencyKey: string | null;
  requestHash: string | null;
}

/** What a queued request or a booking keeps until its accounts are made: sealed (secret box, base64). */
export interface SealedAccount {
  /** The account's password hash and SSH key. */
  accountSecrets: string;
  /** A password berth generated, for its owner's first read once active; null when the user chose theirs. */
  sealedPassword: string | null;
}


/** The failure_reason column's size. */
const FAILURE_REASON_MAX = 1024;

export function createReservationStatus(deps: {
  prisma: PrismaClient;
  /** Raises what a transition changed once it has committed (`open` records into its transaction's afterCommit). */
  events: Pick<EventBus, 'raise'>;
  policy: Pick<ReservationPolicy, 'leaseSeconds' | 'maxTotalMinutes'>;
  /** Names this process in leases: who is working on a reservation. */
  instanceId: string;
  log: Pick<ReservationLog, 'warn'>;
}) {
  const { prisma, events, policy, instanceId, log } = deps;
  const leaseUntil = () => new Date(Date.now() + policy.leaseSeconds * 1000);
  /** Every claim gets its own token: a takeover by this same process is still a different owner. */
  const newLease = () => `${instanceId}/${randomUUID().slice(0, 8)}`;

  /** The work under `token` goes on: its lease runs on (only while its status is one worked on under a lease). */
  async function renewLease(id: string, token: string): Promise<void> {
    await prisma.reservation.updateMany({ where: { id, leaseOwner: token, status: { in: [...LEASED_STATUSES] } }, data: { leaseUntil: leaseUntil() } });
  }

  /** The columns every new reservation sets alike; `startsAt` is when its window opens (for the policy cap). */
  const columnsOf = (r: NewReservation, startsAt: number) => ({
    userId: r.userId,
    ownerUsername: r.ownerUsername,
    accountUsername: r.accountUsername,
    durationMinutes: r.durationMinutes,
    maxExpiresAt: new Date(startsAt + policy.maxTotalMinutes * 60_000),
    idempotencyKey: r.idempotencyKey,
    requestHash: r.requestHash,
  });

  /** A queued request or a booking ends before it started: nothing to undo, its secrets go. */
  async function endUnstarted(r: ReservationRef, from: 'queued' | 'scheduled', to: Ended, reason: string, also: Prisma.ReservationWhereInput): Promise<boolean> {
    const { count } = await prisma.reservation.updateMany({
      where: { id: r.id, status: from, ...also },
      data: {
        status: to,
        releasedAt: new Date(),
        estimatedStart: null,
        accountSecrets: null,
        sealedPassword: null,
        ...(to === 'failed' ? { failureReason: reason.slice(0, FAILURE_REASON_MAX) } : { releaseReason: reason }),
      },
    });
    if (count !== 1) return false;
    await changed(r, from, to, reason);
    return true;
  }

  const changed = (r: ReservationRef, from: ReservationStatus, to: ReservationStatus, reason: string | null) => {
    const forOwner = failureReasonFor(reason, { admin: false });
    return events.raise('reservation.changed', { reservationId: r.id, userId: r.userId, from, to, reason: forOwner, adminDetail: forOwner === reason ? null : reason });
  };

  return {
    /**
     * Allocation, inside its transaction (`record` from the same events.afterCommit): a new
     * reservation in `provisioning`, holding `machineIds`, under a lease of this process.
     */
    async open(tx: Prisma.TransactionClient, record: RecordEvent, r: NewReservation & { machineIds: string[]; now: number }): Promise<{ id: string; token: string }> {
      const id = randomUUID();
      const token = newLease();
      // The window the planner checked: from the moment it planned, not a later clock read.
      const { now } = r;
      await tx.reservation.create({
        data: {
          ...columnsOf(r, now),
          id,
          status: 'provisioning',
          machineCount: r.machineIds.length,
          expiresAt: new Date(now + r.durationMinutes * 60_000),
          leaseOwner: token,
          leaseUntil: leaseUntil(),
          machines: { create: r.machineIds.map((machineId) => ({ machineId })) },
        },
      });
      record('reservation.changed', { reservationId: id, userId: r.userId, from: null, to: 'provisioning', reason: null, adminDetail: null });
      return { id, token };
    },

    /** A request that waits for machines (`wait_minutes`), in allocation's transaction. */
    async openQueued(
      tx: Prisma.TransactionClient,
      record: RecordEvent,
      r: NewReservation & SealedAccount & { request: MachineAsk; machineCount: number; waitUntil: Date; estimatedStart: Date | null },
    ): Promise<string> {
      const id = randomUUID();
      await tx.reservation.create({
        data: {
          ...columnsOf(r, Date.now()),
          id,
          status: 'queued',
          machineCount: r.machineCount,
          request: { ...r.request },
          waitUntil: r.waitUntil,
          estimatedStart: r.estimatedStart,
          accountSecrets: r.accountSecrets,
          sealedPassword: r.sealedPassword,
        },
      });
      record('reservation.changed', { reservationId: id, userId: r.userId, from: null, to: 'queued', reason: null, adminDetail: null });
      return id;
    },

    /** A booking of `machineIds` for [startAt, startAt + duration), in allocation's transaction. */
    async openScheduled(
      tx: Prisma.TransactionClient,
      record: RecordEvent,
      r: NewReservation & SealedAccount & { machineIds: string[]; startAt: Date; request: MachineAsk },
    ): Promise<string> {
      const id = randomUUID();
      await tx.reservation.create({
        data: {
          ...columnsOf(r, r.startAt.getTime()),
          id,
          status: 'scheduled',
          machineCount: r.machineIds.length,
          request: { ...r.request },
          startAt: r.startAt,
          expiresAt: new Date(r.startAt.getTime() + r.durationMinutes * 60_000),
          accountSecrets: r.accountSecrets,
          sealedPassword: r.sealedPassword,
          machines: { create: r.machineIds.map((machineId) => ({ machineId })) },
        },
      });
      record('reservation.changed', { reservationId: id, userId: r.userId, from: null, to: 'scheduled', reason: null, adminDetail: null });
      return id;
    },

    /**
     * The scheduler, inside its transaction: a queued request whose machines it has just
     * claimed (its window [now, now + duration)), or a booking whose start has come (its
     * window as booked), becomes `provisioning` under a lease of this process. The token
     * when the update applied.
     */
    async promote(tx: Prisma.TransactionClient, record: RecordEvent, r: ReservationRef & { from: 'queued' | 'scheduled'; expiresAt?: Date; machineCount?: number }): Promise<string | null> {
      const token = newLease();
      const { count } = await tx.reservation.updateMany({
        where: { id: r.id, status: r.from, userId: { not: null } },
        data: {
          status: 'provisioning',
          leaseOwner: token,
          leaseUntil: leaseUntil(),
          estimatedStart: null,
          ...(r.expiresAt && { expiresAt: r.expiresAt, maxExpiresAt: new Date(Date.now() + policy.maxTotalMinutes * 60_000) }),
          ...(r.machineCount !== undefined && { machineCount: r.machineCount }),
        },
      });
      if (count !== 1) return null;
      record('reservation.changed', { reservationId: r.id, userId: r.userId, from: r.from, to: 'provisioning', reason: null, adminDetail: null });
      return token;
    },

    /** The owner (`cancelled`) or an admin (`cancelled_by_admin`) withdraws a queued request or a booking, or its user is deleted. */
    async cancel(r: ReservationRef & { status: 'queued' | 'scheduled' }, reason: 'cancelled' | 'cancelled_by_admin' | 'user_deleted'): Promise<boolean> {
      return endUnstarted(r, r.status, 'released', reason, {});
    },

    /** A queued request that has not started by its `wait_until` ends `released`, `expired`: it never held anything. */
    async expireWait(r: ReservationRef): Promise<boolean> {
      return endUnstarted(r, 'queued', 'released', 'expired', { waitUntil: { lte: new Date() } });
    },

    /** A booking that cannot take place: `failed`, with why. */
    async failBooking(r: ReservationRef, reason: string): Promise<boolean> {
      return endUnstarted(r, 'scheduled', 'failed', reason, {});
    },

    /** The planner's latest estimate of a queued request's start (no event: the request has not changed). */
    async estimate(tx: Prisma.TransactionClient, id: string, estimatedStart: Date | null): Promise<void> {
      await tx.reservation.updateMany({ where: { id, status: 'queued' }, data: { estimatedStart } });
    },

    /**
     * Every account is made: `provisioning` under `token` becomes `active` until the end its
     * window was given when planned, only for a user who still exists (one deleted meanwhile gets nothing). False when the
     * update did not apply.
     */
    async activate(r: ReservationRef, token: string): Promise<boolean> {
      const { count } = await prisma.reservation.updateMany({
        where: { id: r.id, status: 'provisioning', leaseOwner: token, userId: { not: null } },
        data: { status: 'active', activatedAt: new Date(), leaseUntil: null, accountSecrets: null },
      });
      if (count !== 1) return false;
      await changed(r, 'provisioning', 'active', null);
      return true;
    },

    /**
     * An active reservation read with expiry `from` now ends at `to` (in the transaction that
     * checked the bookings behind it). Compare-and-set on the old expiry, which must not have passed: two extensions at once cannot both count from
     * it, and one that has run out is the job's to release. False when it changed meanwhile.
     */
    async extend(within: InTransaction, r: ReservationRef & { expiresAt: Date }, to: Date): Promise<boolean> {
      const { count } = await within.tx.reservation.updateMany({
        where: { id: r.id, status: 'active', AND: [{ expiresAt: r.expiresAt }, { expiresAt: { gt: new Date() } }] },
        data: { expiresAt: to },
      });
      if (count !== 1) return false;
      within.record('reservation.extended', { reservationId: r.id, userId: r.userId, expiresAt: to });
      return true;
    },

    /**
     * Claims an active reservation for release (`onlyIfExpired`: only once its time is up):
     * `releasing` under a new lease of this process. The lease token when this process won it.
     */
    async claimForRelease(r: ReservationRef, reason: string, onlyIfExpired = false): Promise<string | null> {
      const token = newLease();
      const { count } = await prisma.reservation.updateMany({
        where: { id: r.id, status: 'active', ...(onlyIfExpired && { expiresAt: { lte: new Date() } }) },
        data: { status: 'releasing', releaseReason: reason, leaseOwner: token, leaseUntil: leaseUntil(), sealedPassword: null },
      });
      if (count !== 1) return null;
      await changed(r, 'active', 'releasing', reason);
      return token;
    },

    /**
     * A reservation read in `status` whose lease had run out by `staleAt`: this process takes
     * it over under a new lease, in the same status. The token when it won.
     */
    async takeOver(r: { id: string; status: Leased }, staleAt: Date): Promise<string | null> {
      const token = newLease();
      const { count } = await prisma.reservation.updateMany({
        where: { id: r.id, status: r.status, leaseUntil: { lt: staleAt } },
        data: { leaseOwner: token, leaseUntil: leaseUntil() },
      });
      return count === 1 ? token : null;
    },

    renewLease,

    /** Keeps the lease alive while `work` runs, so a slow machine is not mistaken for a crash. */
    async underLease<T>(id: string, token: string, work: () => Promise<T>): Promise<T> {
      const timer = setInterval(() => {
        void renewLease(id, token).catch((err: unknown) => log.warn({ err, reservation: id }, 'could not renew a lease'));
      }, (policy.leaseSeconds * 1000) / 3);
      try {
        return await work();
      } finally {
        clearInterval(timer);
      }
    },

    /**
     * The reservation, in `status` under `token`, has ended: `released` with why, or `failed`
     * with what went wrong. False when the lease was lost meanwhile (its new owner finishes it).
     */
    async finish(r: ReservationRef & { status: Leased }, token: string, to: Ended, reason: string): Promise<boolean> {
      const { count } = await prisma.reservation.updateMany({
        where: { id: r.id, status: r.status, leaseOwner: token },
        data: {
          status: to,
          releasedAt: new Date(),
          leaseUntil: null,
          accountSecrets: null,
          sealedPassword: null,
          ...(to === 'failed' ? { failureReason: reason.slice(0, FAILURE_REASON_MAX) } : { releaseReason: reason }),
        },
      });
      if (count !== 1) return false;
      await changed(r, r.status, to, to === 'failed' ? reason.slice(0, FAILURE_REASON_MAX) : reason);
      return true;
    },
  };
}

export type ReservationStatusWriter = ReturnType<typeof createReservationStatus>;
