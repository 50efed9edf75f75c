// The reservations' SQL in one place: the view the API shows (for lists and single reads
// alike), the machines a user holds or waits for, the planner row, and the reads allocation
// claims machines by. The pool's windows, as the planner reads them, are in windows.ts.
import { Prisma } from '../../generated/prisma/client.js';
import type { Database } from '../../infra/database.js';
import { isoTime, isoTimeOrNull, type IsoTime } from '../../shared/timestamps.js';
import type { MachineRow } from '../machines/access.js';
import { MACHINE_ROW_COLUMNS, machineRowOf } from '../machines/queries.js';
import type { ReservationRow } from './model.js';
import { LIVE_STATUSES } from '../../shared/reservation-statuses.js';

type ReservationTimes = 'createdAt' | 'activatedAt' | 'expiresAt' | 'maxExpiresAt' | 'releasedAt' | 'startAt' | 'waitUntil' | 'estimatedStart';
/** A reservation as the API shows it: times in ISO 8601, and of each machine only what the answer shows. */
export type ReservationView = Omit<ReservationRow, ReservationTimes | 'machines' | 'leaseOwner' | 'leaseUntil' | 'idempotencyKey' | 'requestHash' | 'request' | 'accountSecrets' | 'sealedPassword'> & {
  [K in ReservationTimes]: null extends ReservationRow[K] ? IsoTime | null : IsoTime;
} & {
  machines: { machine: { name: string; host: string; port: number; hostKey: string | null } }[];
  /** A queued request's place in line (1: next), null otherwise. */
  queuePosition: number | null;
};

/**
 * Reservations with their machines in one round trip, never the machines' credentials.
 * Each reservation's machines come as one GROUP_CONCAT, fields apart by the ASCII unit
 * separator and machines by the record separator (no name, host or key can hold either; a
 * NULL would drop the machine, hence the IFNULL): MariaDB answers this query 1.6 times as
 * often as the same with JSON_ARRAYAGG(JSON_OBJECT(…)) (measured).
 */
const UNIT = '\x1f';
const RECORD = '\x1e';
export const RESERVATION_VIEW_SELECT = `SELECT r.id, r.user_id AS userId, r.owner_username AS ownerUsername, r.status,
  r.account_username AS accountUsername, r.duration_minutes AS durationMinutes, r.created_at AS createdAt,
  r.activated_at AS activatedAt, r.expires_at AS expiresAt, r.max_expires_at AS maxExpiresAt, r.released_at AS releasedAt,
  r.release_reason AS releaseReason, r.failure_reason AS failureReason, r.machine_count AS machineCount,
  r.start_at AS startAt, r.wait_until AS waitUntil, r.estimated_start AS estimatedStart,
  CASE WHEN r.status = 'queued' THEN (SELECT COUNT(*) FROM reservations q WHERE q.status = 'queued'
    AND (q.created_at < r.created_at OR (q.created_at = r.created_at AND q.id <= r.id))) END AS queuePosition,
  (SELECT GROUP_CONCAT(m.name, '${UNIT}', m.host, '${UNIT}', m.port, '${UNIT}', IFNULL(m.host_key, '') SEPARATOR '${RECORD}') FROM reservation_machines rm JOIN machines m ON m.id = rm.machine_id
   WHERE rm.reservation_id = r.id) AS machines
  FROM reservations r`;
type ReservationViewRow = Omit<ReservationView, 'machines' | 'queuePosition'> & { machines: string | null; queuePosition: bigint | number | null };

function fromViewRow(row: ReservationViewRow): ReservationView {
  const machines = (row.machines?.split(RECORD) ?? []).map((entry) => {
    const [name, host, port, hostKey] = entry.split(UNIT);
    return { machine: { name: name!, host: host!, port: Number(port), hostKey: hostKey || null } };
  });
  return { ...row, machines, queuePosition: row.queuePosition === null ? null : Number(row.queuePosition) };
}

/** A page of reservations WHERE `where` (infra/sql-where.ts), newest first. */
export async function reservationPage(prisma: Database, where: { sql: string; values: unknown[] }, limit: number): Promise<ReservationView[]> {
  const rows = await prisma.$rows<ReservationViewRow>(`${RESERVATION_VIEW_SELECT} ${where.sql} ORDER BY r.created_at DESC, r.id DESC LIMIT ?`, [...where.values, limit]);
  return rows.map(fromViewRow);
}

/** One reservation's view, by the list's query; null when there is none. */
export async function reservationById(prisma: Database, id: string): Promise<ReservationView | null> {
  const [row] = await prisma.$rows<ReservationViewRow>(`${RESERVATION_VIEW_SELECT} WHERE r.id = ?`, [id]);
  return row ? fromViewRow(row) : null;
}

/** The view of a reservation Prisma read with its machines (an idempotent replay's). */
export function reservationView(r: ReservationRow): ReservationView {
  return {
    id: r.id,
    userId: r.userId,
    ownerUsername: r.ownerUsername,
    status: r.status,
    accountUsername: r.accountUsername,
    durationMinutes: r.durationMinutes,
    createdAt: isoTime(r.createdAt),
    activatedAt: isoTimeOrNull(r.activatedAt),
    expiresAt: isoTimeOrNull(r.expiresAt),
    maxExpiresAt: isoTime(r.maxExpiresAt),
    releasedAt: isoTimeOrNull(r.releasedAt),
    startAt: isoTimeOrNull(r.startAt),
    waitUntil: isoTimeOrNull(r.waitUntil),
    estimatedStart: isoTimeOrNull(r.estimatedStart),
    machineCount: r.machineCount,
    // A replay answers what was decided; where it stands in line now, a read says.
    queuePosition: null,
    releaseReason: r.releaseReason,
    failureReason: r.failureReason,
    machines: r.machines.map(({ machine: m }) => ({ machine: { name: m.name, host: m.host, port: m.port, hostKey: m.hostKey } })),
  };
}

/**
 * Writes the one planner row: every scheduling decision (allocation, promotion of the queue,
 * a booking's start or re-plan, an extension) starts with it, inside its transaction, so
 * decisions are made one at a time across processes. A write, not a read lock: a Galera
 * cluster certifies it across nodes, where GET_LOCK and FOR UPDATE stay node-local.
 */
export async function lockPlanner(tx: Prisma.TransactionClient): Promise<void> {
  await tx.$executeRaw`UPDATE planner_lock SET decisions = decisions + 1 WHERE id = 1`;
}

/** The statuses whose machines count against a user's limit: held, waited for, or booked. */
const COUNTED_STATUSES = [...LIVE_STATUSES, 'queued', 'scheduled'] as const;

/** How many machines `userId` holds, waits for or has booked; inside allocation's transaction. */
export async function machinesHeldBy(tx: Prisma.TransactionClient, userId: string): Promise<number> {
  const [held] = await tx.$queryRaw<{ n: bigint | number | null }[]>`
    SELECT SUM(machine_count) AS n FROM reservations WHERE user_id = ${userId} AND status IN (${Prisma.join(COUNTED_STATUSES)})`;
  return Number(held?.n ?? 0);
}

/**
 * Machines that are VMs of another host which cannot serve them now: that host is down, or
 * its VMs' SSH is not published beyond its loopback (BERTH_VM_PUBLIC_HOST) — the account is
 * made, and used, from elsewhere.
 */
export async function unreachableVms(tx: Prisma.TransactionClient, node: string, vmHostDownAfterMs: number): Promise<string[]> {
  const upSince = new Date(Date.now() - vmHostDownAfterMs);
  const rows = await tx.$queryRaw<{ id: string }[]>`
    SELECT v.machine_id AS id FROM vms v LEFT JOIN vm_hosts h ON h.name = v.node
     WHERE v.machine_id IS NOT NULL AND v.node <> ${node}
       AND (h.name IS NULL OR h.heartbeat_at < ${upSince} OR h.public_host LIKE '127.%' OR h.public_host = 'localhost')`;
  return rows.map((r) => r.id);
}

/** When the longest wait of the queue ends (ms since the epoch); null when nothing is queued. */
export async function latestWaitEnd(tx: Prisma.TransactionClient): Promise<number | null> {
  const [row] = await tx.$queryRaw<{ at: Date | null }[]>`SELECT MAX(wait_until) AS at FROM reservations WHERE status = 'queued'`;
  return row?.at ? row.at.getTime() : null;
}

/**
 * The earliest start of a booking on any of reservation `id`'s machines at or after `from`:
 * the furthest its window may grow. Null when none is booked behind it.
 */
export async function nextBookingStart(tx: Prisma.TransactionClient, id: string, from: Date): Promise<Date | null> {
  const [row] = await tx.$queryRaw<{ at: Date | null }[]>`
    SELECT MIN(b.start_at) AS at FROM reservation_machines mine
      JOIN reservation_machines other ON other.machine_id = mine.machine_id AND other.reservation_id <> mine.reservation_id
      JOIN reservations b ON b.id = other.reservation_id
     WHERE mine.reservation_id = ${id} AND b.status = 'scheduled' AND b.start_at >= ${from}`;
  return row?.at ?? null;
}

/**
 * The password berth generated for a queued or booked reservation, taken once: the read that
 * clears it is the one that shows it (two reads at once: one of them). Null when there is
 * none (any more).
 */
export async function takeSealedPassword(prisma: Database, id: string): Promise<string | null> {
  const [row] = await prisma.$rows<{ sealed: string | null }>(`SELECT sealed_password AS sealed FROM reservations WHERE id = ? AND status = 'active'`, [id]);
  if (!row?.sealed) return null;
  const { count } = await prisma.reservation.updateMany({ where: { id, sealedPassword: row.sealed }, data: { sealedPassword: null } });
  return count === 1 ? row.sealed : null;
}

/**
 * Locks the candidate `id` through its primary key while it is still available, reading the
 * whole row: the one read of the machine that setting up the reservation works with. Null
 * when another request holds or took it.
 */
export async function lockIfAvailable(tx: Prisma.TransactionClient, id: string): Promise<MachineRow | null> {
  const [raw] = await tx.$queryRaw<Parameters<typeof machineRowOf>[0][]>`
    SELECT ${Prisma.raw(MACHINE_ROW_COLUMNS)} FROM machines WHERE id = ${id} AND status = 'available' FOR UPDATE SKIP LOCKED`;
  return raw ? machineRowOf(raw) : null;
}
