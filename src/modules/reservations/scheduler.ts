// The scheduler: what turns queued requests and bookings into reservations, each thing once
// with any number of berth processes on one database. A tick:
//   1. ends queued requests whose wait ran out (`expired`: they never held anything);
//   2. re-plans bookings that lost a machine (maintenance, offline, deleted) onto another
//      matching machine free for their window, or fails them with the reason;
//   3. under the planner row (one decision at a time across processes): starts bookings whose
//      start has come once their machines are free, and promotes the queue in arrival order
//      where the plan (planner.ts, conservative backfill) says a request can start now; the
//      rest get their new estimate;
//   4. makes the accounts of what it started (setup.ts), outside the transaction.
// Each start is a conditional update (status.promote) in the transaction that claims the
// machines; a process killed after it leaves a `provisioning` lease that runs out, and the
// reconciler undoes it, as for any reservation. No node-local lock (GET_LOCK) anywhere.
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import type { RecordEvent } from '../../events/bus.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { mapLimit } from '../../shared/map-limit.js';
import type { MachineRow } from '../machines/access.js';
import { REASONS, type MachineState } from '../machines/state.js';
import { usablePool } from './allocation.js';
import { UNWIND_CONCURRENCY, type MachineAsk, type ReservationLog, type ReservationPolicy } from './model.js';
import { placementAt, planQueue, type PlanRequest } from './planner.js';
import type { Decide } from './decisions.js';
import { latestWaitEnd, lockIfAvailable } from './queries.js';
import { openAccountSecrets } from './sealed-account.js';
import type { AccountSetUp } from './setup.js';
import type { ReservationStatusWriter } from './status.js';
import { readQueue } from './windows.js';

/**
 * Berth takes machines out of the pool on its own between reservations, for a while: a VM is
 * reset (`offline`, "vm booting" or its cleanup pending), a physical machine waits for its
 * leftover account to be cleaned (`offline`, cleanup pending) or, after sudo, for its
 * reinstall (`needs_reprovision`). Its bookings stay where they are: their start waits for
 * it, as for a machine still being released, and only if it is still out PASSING_GRACE_MS
 * after a booking's start is that booking re-planned. A machine in maintenance, deleted, or
 * offline for any other reason (unreachable, a changed host key) has left the pool: its
 * bookings are re-planned at once.
 */
const PASSING_GRACE_MS = 2 * 60_000;
const IN_PASSING = Prisma.sql`(m.status = 'needs_reprovision' OR (m.status = 'offline' AND (m.status_reason = ${REASONS.vmBooting} OR m.status_reason LIKE 'cleanup pending%')))`;
const hasLeft = (m: { status: string; statusReason: string | null }, passingTooLong: boolean) => {
  if (m.status === 'available' || m.status === 'reserved') return false;
  const passing = m.status === 'needs_reprovision' || (m.status === 'offline' && (m.statusReason === REASONS.vmBooting || !!m.statusReason?.startsWith('cleanup pending')));
  return !passing || passingTooLong;
};

/** How often a process looks for bookings whose machine was deleted (a forced deletion). */
const DELETIONS_CHECK_MS = 60_000;

/** Bookings started, and queued requests promoted, per tick at most. */
const STARTS_PER_TICK = 50;

export interface SchedulerTick {
  expired: number;
  replanned: number;
  failed: number;
  started: number;
}

/** A reservation this tick started: the lease it is set up under, and its machines. */
interface Started {
  id: string;
  userId: string | null;
  accountUsername: string;
  accountSecrets: string | null;
  token: string;
  machines: MachineRow[];
}

export function createScheduler(deps: {
  prisma: PrismaClient;
  decide: Decide;
  state: Pick<MachineState, 'claim'>;
  status: Pick<ReservationStatusWriter, 'promote' | 'expireWait' | 'failBooking' | 'estimate'>;
  setUp: AccountSetUp;
  secretBox: SecretBox;
  policy: Pick<ReservationPolicy, 'bookingHorizonDays' | 'maxMinutes'>;
  node: string;
  vmHostDownAfterMs: number;
  log: ReservationLog;
}) {
  const { prisma, decide, state, status, setUp, secretBox, policy, log } = deps;
  const horizonMs = policy.bookingHorizonDays * 24 * 60 * 60_000;
  const pool = (tx: Parameters<typeof usablePool>[0], now: number, until: number) =>
    usablePool(tx, { now, until, node: deps.node, vmHostDownAfterMs: deps.vmHostDownAfterMs });

  async function expireWaits(): Promise<number> {
    const due = await prisma.reservation.findMany({ where: { status: 'queued', waitUntil: { lte: new Date() } }, select: { id: true, userId: true }, take: 200 });
    let expired = 0;
    for (const r of due) if (await status.expireWait(r)) expired++;
    return expired;
  }

  /** When this process last looked for bookings that lost a machine to its deletion. */
  let deletionsCheckedAt = 0;

  /**
   * Bookings holding a machine that has left the pool (or was deleted): moved onto another
   * matching machine free for the whole window, or failed with why. Named machines have no
   * substitute. Found from the machines out of the pool (a few, by the status index), every
   * tick; a deleted machine leaves no row to start from, only a booking with fewer machines
   * than it asked for, which takes a look at every booking: at most once a minute.
   */
  async function replanBookings(): Promise<{ replanned: number; failed: number }> {
    const now = new Date();
    const broken = await prisma.$queryRaw<{ id: string }[]>`
      SELECT DISTINCT r.id FROM machines m
        JOIN reservation_machines rm ON rm.machine_id = m.id
        JOIN reservations r ON r.id = rm.reservation_id
       WHERE m.status NOT IN ('available', 'reserved') AND r.status = 'scheduled' AND r.expires_at > ${now}
         AND (NOT ${IN_PASSING} OR r.start_at <= ${new Date(now.getTime() - PASSING_GRACE_MS)})
       LIMIT 100`;
    if (now.getTime() - deletionsCheckedAt >= DELETIONS_CHECK_MS) {
      deletionsCheckedAt = now.getTime();
      broken.push(
        ...(await prisma.$queryRaw<{ id: string }[]>`
          SELECT r.id FROM reservations r
           WHERE r.status = 'scheduled' AND r.expires_at > ${now}
             AND r.machine_count > (SELECT COUNT(*) FROM reservation_machines rm WHERE rm.reservation_id = r.id)
           LIMIT 100`),
      );
    }
    let replanned = 0;
    let failed = 0;
    for (const { id } of broken) {
      const outcome = await replanOne(id);
      if (outcome === 'replanned') replanned++;
      if (outcome === 'failed') failed++;
    }
    return { replanned, failed };
  }

  async function replanOne(id: string): Promise<'replanned' | 'failed' | 'unchanged'> {
    const verdict = await decide(async (tx) => {
      const r = await tx.reservation.findUnique({ where: { id }, include: { machines: { include: { machine: { select: { id: true, name: true, status: true, statusReason: true } } } } } });
      if (!r || r.status !== 'scheduled' || !r.startAt || !r.expiresAt) return { kind: 'unchanged' as const };
      const passingTooLong = r.startAt.getTime() <= Date.now() - PASSING_GRACE_MS;
      const gone = r.machines.filter((rm) => hasLeft(rm.machine, passingTooLong));
      const missing = r.machineCount - (r.machines.length - gone.length);
      if (missing <= 0) return { kind: 'unchanged' as const };
      const lost = gone.map((g) => `${g.machine.name} (${g.machine.status})`).join(', ') || 'a deleted machine';
      const asked = (r.request ?? {}) as MachineAsk;
      if (asked.machines) return { kind: 'fail' as const, reason: `a booked machine left the pool: ${lost}; the booking named its machines` };
      const start = r.startAt.getTime();
      const keep = new Set(r.machines.filter((rm) => !gone.includes(rm)).map((rm) => rm.machineId));
      const others = (await pool(tx, Date.now(), r.expiresAt.getTime())).filter((m) => !keep.has(m.id) && !gone.some((g) => g.machineId === m.id));
      const request: PlanRequest = { id, count: missing, durationMs: r.expiresAt.getTime() - start, ...(asked.type !== undefined && { type: asked.type }), ...(asked.tags && { tags: asked.tags }) };
      const placed = placementAt(others, request, { now: Date.now(), start });
      if (!placed) return { kind: 'fail' as const, reason: `a booked machine left the pool: ${lost}; no other matching machine is free for the window` };
      await tx.reservationMachine.deleteMany({ where: { reservationId: id, machineId: { in: gone.map((g) => g.machineId) } } });
      await tx.reservationMachine.createMany({ data: placed.machineIds.map((machineId) => ({ reservationId: id, machineId })) });
      log.info({ reservation: id, lost, now: placed.machineIds }, 're-planned a booking onto other machines');
      return { kind: 'replanned' as const };
    });
    if (verdict.kind !== 'fail') return verdict.kind;
    const r = await prisma.reservation.findUnique({ where: { id }, select: { userId: true } });
    return (await status.failBooking({ id, userId: r?.userId ?? null }, verdict.reason)) ? 'failed' : 'unchanged';
  }

  /** Locks every machine in `ids` while available (name order); null unless all of them are. */
  async function lockAll(tx: Parameters<typeof lockIfAvailable>[0], ids: string[]): Promise<MachineRow[] | null> {
    const locked: MachineRow[] = [];
    for (const id of ids) {
      const m = await lockIfAvailable(tx, id);
      if (!m) return null;
      locked.push(m);
    }
    return locked.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Claims the locked `machines` for reservation `id`: all of them, or the decision is undone. */
  async function claimAll(tx: Prisma.TransactionClient, machines: MachineRow[], id: string, record: RecordEvent): Promise<void> {
    const claimed = await state.claim(tx, machines.map((m) => m.id), id, record);
    if (claimed !== machines.length) throw new Error(`claimed ${claimed} of ${machines.length} locked machines`);
  }

  /** Step 3: bookings whose start has come, then the queue, in one transaction under the planner row. */
  async function startDue(): Promise<{ started: Started[]; failed: { id: string; userId: string | null }[] }> {
    // Nothing queued and no booking due (most ticks): no decision to make, and no write of the
    // planner row every few seconds from every process. Two index lookups, no lock.
    const [pending] = await prisma.$queryRaw<{ due: bigint | number }[]>`
      SELECT EXISTS(SELECT 1 FROM reservations WHERE status = 'queued')
          OR EXISTS(SELECT 1 FROM reservations WHERE status = 'scheduled' AND start_at <= ${new Date()}) AS due`;
    if (!Number(pending?.due)) return { started: [], failed: [] };
    return decide(async (tx, record) => {
      const now = Date.now();
      const started: Started[] = [];
      const failed: { id: string; userId: string | null }[] = [];

      const due = await tx.reservation.findMany({
        where: { status: 'scheduled', startAt: { lte: new Date(now) } },
        include: { machines: { select: { machineId: true } } },
        orderBy: { startAt: 'asc' },
        take: STARTS_PER_TICK,
      });
      for (const b of due) {
        // berth was not running for the whole window: there is nothing left to give.
        if (b.expiresAt!.getTime() <= now) {
          failed.push(b);
          continue;
        }
        // A machine still being released by the window before waits for the next tick.
        const machines = await lockAll(tx, b.machines.map((m) => m.machineId));
        if (!machines || machines.length < b.machineCount) continue;
        const token = await status.promote(tx, record, { id: b.id, userId: b.userId, from: 'scheduled' });
        if (!token) continue;
        await claimAll(tx, machines, b.id, record);
        started.push({ ...b, token, machines });
      }

      const queue = await readQueue(tx);
      if (queue.length) {
        const estimates = new Map((await tx.reservation.findMany({ where: { status: 'queued' }, select: { id: true, estimatedStart: true } })).map((q) => [q.id, q.estimatedStart?.getTime() ?? null]));
        // Planned as far as anything queued may still start (the end of the longest wait).
        const until = Math.min(now + horizonMs, (await latestWaitEnd(tx)) ?? now);
        const { placements } = planQueue(await pool(tx, now, until + policy.maxMinutes * 60_000), queue, { now, horizon: until });
        for (const q of queue) {
          const placed = placements.get(q.id) ?? null;
          if (placed && placed.start <= now && started.length < STARTS_PER_TICK) {
            const machines = await lockAll(tx, placed.machineIds);
            const r = machines && (await tx.reservation.findUnique({ where: { id: q.id }, select: { id: true, userId: true, accountUsername: true, accountSecrets: true } }));
            if (machines && r) {
              const token = await status.promote(tx, record, { id: q.id, userId: r.userId, from: 'queued', expiresAt: new Date(now + q.durationMs), machineCount: machines.length });
              if (token) {
                await tx.reservationMachine.createMany({ data: machines.map((m) => ({ reservationId: q.id, machineId: m.id })) });
                await claimAll(tx, machines, q.id, record);
                started.push({ ...r, token, machines });
                continue;
              }
            }
          }
          const estimate = placed ? Math.max(placed.start, now) : null;
          if (estimates.get(q.id) !== estimate) await status.estimate(tx, q.id, estimate === null ? null : new Date(estimate));
        }
      }
      return { started, failed };
    });
  }

  /** Step 4: the accounts of what was started; a failure is the reservation's (failed, with why), not the tick's. */
  async function setUpStarted(started: Started[]): Promise<void> {
    await mapLimit(started, UNWIND_CONCURRENCY, async (s) => {
      const secrets = s.accountSecrets ? openAccountSecrets(secretBox, s.accountSecrets) : {};
      const done = await setUp({ id: s.id, userId: s.userId, accountUsername: s.accountUsername }, s.machines, secrets, s.token);
      if (done.outcome !== 'active') log.warn({ reservation: s.id, outcome: done.outcome, ...(done.outcome === 'failed' && { detail: done.detail }) }, 'a scheduled reservation could not be set up');
    });
  }

  return async function tick(): Promise<SchedulerTick> {
    const expired = await expireWaits();
    const replan = await replanBookings();
    const { started, failed } = await startDue();
    for (const b of failed) if (await status.failBooking(b, 'berth was not running during the booked window')) replan.failed++;
    await setUpStarted(started);
    return { expired, ...replan, started: started.length };
  };
}

export type Scheduler = ReturnType<typeof createScheduler>;
