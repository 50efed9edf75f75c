// The reservations' SQL in one place: the view the API shows (for lists and single reads
// alike), the machines a user holds, and the reads allocation claims machines by.
import { Prisma } from '../../generated/prisma/client.js';
import type { Database } from '../../infra/database.js';
import { isoTime, isoTimeOrNull, type IsoTime } from '../../shared/timestamps.js';
import type { MachineRow } from '../machines/access.js';
import { asPrismaSql } from '../../infra/sql-where.js';
import { MACHINE_ROW_COLUMNS, machineRowOf, tagIs } from '../machines/queries.js';
import type { CreateReservationInput, ReservationRow } from './model.js';
import { LIVE_STATUSES } from '../../shared/reservation-statuses.js';

type ReservationTimes = 'createdAt' | 'activatedAt' | 'expiresAt' | 'maxExpiresAt' | 'releasedAt';
/** A reservation as the API shows it: times in ISO 8601, and of each machine only what the answer shows. */
export type ReservationView = Omit<ReservationRow, ReservationTimes | 'machines' | 'leaseOwner' | 'leaseUntil' | 'idempotencyKey' | 'requestHash' | 'machineCount' | 'request' | 'startAt' | 'waitUntil' | 'estimatedStart' | 'accountSecrets' | 'sealedPassword'> & {
  [K in ReservationTimes]: null extends ReservationRow[K] ? IsoTime | null : IsoTime;
} & { machines: { machine: { name: string; host: string; port: number; hostKey: string | null } }[] };

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
  r.release_reason AS releaseReason, r.failure_reason AS failureReason,
  (SELECT GROUP_CONCAT(m.name, '${UNIT}', m.host, '${UNIT}', m.port, '${UNIT}', IFNULL(m.host_key, '') SEPARATOR '${RECORD}') FROM reservation_machines rm JOIN machines m ON m.id = rm.machine_id
   WHERE rm.reservation_id = r.id) AS machines
  FROM reservations r`;
type ReservationViewRow = Omit<ReservationView, 'machines'> & { machines: string | null };

function fromViewRow(row: ReservationViewRow): ReservationView {
  const machines = (row.machines?.split(RECORD) ?? []).map((entry) => {
    const [name, host, port, hostKey] = entry.split(UNIT);
    return { machine: { name: name!, host: host!, port: Number(port), hostKey: hostKey || null } };
  });
  return { ...row, machines };
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
    releaseReason: r.releaseReason,
    failureReason: r.failureReason,
    machines: r.machines.map(({ machine: m }) => ({ machine: { name: m.name, host: m.host, port: m.port, hostKey: m.hostKey } })),
  };
}

/** How many machines `userId`'s live reservations hold; inside allocation's transaction. */
export async function machinesHeldBy(tx: Prisma.TransactionClient, userId: string): Promise<number> {
  const [held] = await tx.$queryRaw<{ n: bigint }[]>`
    SELECT COUNT(*) AS n FROM reservation_machines rm JOIN reservations r ON r.id = rm.reservation_id
     WHERE r.user_id = ${userId} AND r.status IN (${Prisma.join(LIVE_STATUSES)})`;
  return Number(held?.n ?? 0);
}

/** The conditions a machine must meet for this request, past being available. */
function matching(input: CreateReservationInput, node: string, vmHostDownAfterMs: number): Prisma.Sql {
  const filters: Prisma.Sql[] = [];
  if (input.machines) filters.push(Prisma.sql`AND name IN (${Prisma.join(input.machines)})`);
  if (input.type) filters.push(Prisma.sql`AND type = ${input.type}`);
  for (const [k, v] of Object.entries(input.tags ?? {})) filters.push(Prisma.sql`AND (${asPrismaSql(tagIs(k, v))})`);
  // A VM of another host only while that host is up and its VMs' SSH is published beyond
  // its loopback (BERTH_VM_PUBLIC_HOST): the account is made, and used, from elsewhere.
  const upSince = new Date(Date.now() - vmHostDownAfterMs);
  filters.push(Prisma.sql`AND NOT EXISTS (
    SELECT 1 FROM vms v LEFT JOIN vm_hosts h ON h.name = v.node
     WHERE v.machine_id = machines.id AND v.node <> ${node}
       AND (h.name IS NULL OR h.heartbeat_at < ${upSince} OR h.public_host LIKE '127.%' OR h.public_host = 'localhost'))`);
  return Prisma.join(filters, ' ');
}

/**
 * The available machines that match the request, by a plain read (no lock): a scan with FOR
 * UPDATE would lock every row it examines (tag filters cannot use an index), making
 * concurrent requests skip machines nobody is taking.
 */
export function candidateMachines(tx: Prisma.TransactionClient, input: CreateReservationInput, node: string, vmHostDownAfterMs: number) {
  return tx.$queryRaw<{ id: string }[]>`
    SELECT id FROM machines WHERE status = 'available' ${matching(input, node, vmHostDownAfterMs)} ORDER BY name`;
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
