// The planner's input, read from the database: every machine with the windows of time in
// which a reservation holds it, and the queue. The scheduler reads it inside the
// transaction it decides in; the schedule and availability routes read the same through
// the plain reads (one code path: what the routes show is what the scheduler plans with).
//
// A window is what the planner must keep clear, from now on (the past is not planned):
//   provisioning, active   [now, expires_at), or [now, now + duration) while no expiry is
//                          set yet (a reservation being set up runs its whole duration
//                          from its activation, which is now at the earliest); one past
//                          its expiry and not yet released, [now, now + allowance);
//   releasing              [now, now + allowance): its machines come back once released;
//   scheduled (a booking)  [start_at, expires_at) (a booking's expires_at is start_at + duration);
// and a machine not free now that no live reservation explains (reserved by one that has
// ended: its cleanup is due) is held [now, now + allowance): the reservation job frees it soon.
import type { Prisma } from '../../generated/prisma/client.js';
import type { MachineStatus } from '../../generated/prisma/enums.js';
import type { Database } from '../../infra/database.js';
import { asPrismaSql, sqlTime } from '../../infra/sql-where.js';
import type { Timestamp } from '../../shared/timestamps.js';
import type { MachineAsk } from './model.js';
import type { PlanMachine, PlanRequest, Window } from './planner.js';

/** How long a machine being released (or freed after a crash) is taken to stay held. */
export const DEFAULT_RELEASE_ALLOWANCE_MS = 60_000;

/** The statuses in which a reservation holds, or will hold, its machines for a window. */
export const WINDOW_STATUSES = ['provisioning', 'active', 'releasing', 'scheduled'] as const;
export type WindowStatus = (typeof WINDOW_STATUSES)[number];

/** A window and what holds the machine in it. */
export interface HeldWindow extends Window {
  status: WindowStatus;
  /** Null for a machine no live reservation explains (being freed). */
  reservationId: string | null;
  userId: string | null;
  /** The owner's username. */
  owner: string | null;
}

/** A machine as the planner takes it, with its status and what holds it when. */
export interface PoolMachine extends PlanMachine {
  status: MachineStatus;
  busy: HeldWindow[];
}

/**
 * Where the pool is read from: a transaction's client (the scheduler decides inside one)
 * or berth's client, whose plain reads skip Prisma's conversions (the routes).
 */
export type PoolSource = Pick<Prisma.TransactionClient, '$queryRaw'> | Pick<Database, '$rows'>;

/** Datetimes come as Dates through Prisma and as ISO 8601 strings through the plain reads. */
const msOf = (t: Timestamp) => (typeof t === 'string' ? Date.parse(t) : t.getTime());
/** JSON columns come parsed through the plain reads, as text through Prisma's raw queries. */
const jsonOf = <T>(v: unknown): T => (typeof v === 'string' ? JSON.parse(v) : v) as T;

function rowsOf<T>(db: PoolSource, sql: string, values: unknown[]): Promise<T[]> {
  return '$rows' in db ? db.$rows<T>(sql, values) : db.$queryRaw<T[]>(asPrismaSql([sql, ...values]));
}

interface MachineRow {
  id: string;
  name: string;
  type: string;
  tags: unknown;
  status: MachineStatus;
  reservationId: string | null;
}

interface WindowRow {
  machineId: string;
  reservationId: string;
  userId: string | null;
  owner: string;
  status: WindowStatus;
  startAt: Timestamp | null;
  expiresAt: Timestamp | null;
  durationMinutes: number;
}

const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');

/**
 * Every machine (or those named), in name order, with its windows that end after `now` and
 * start before `until`, each list sorted by start.
 */
export async function readPool(
  db: PoolSource,
  opts: { now: number; until: number; releaseAllowanceMs?: number; names?: string[] },
): Promise<PoolMachine[]> {
  const { now, until, names } = opts;
  const allowance = opts.releaseAllowanceMs ?? DEFAULT_RELEASE_ALLOWANCE_MS;
  if (names?.length === 0) return [];
  const named = names ? `WHERE name IN (${placeholders(names.length)})` : '';
  const machineRows = await rowsOf<MachineRow>(
    db,
    `SELECT id, name, type, tags, status, reservation_id AS reservationId FROM machines ${named} ORDER BY name`,
    names ?? [],
  );
  // Bookings from their start (the (status, start_at) index), live reservations all.
  const windowRows = await rowsOf<WindowRow>(
    db,
    `SELECT rm.machine_id AS machineId, r.id AS reservationId, r.user_id AS userId, r.owner_username AS owner, r.status,
       r.start_at AS startAt, r.expires_at AS expiresAt, r.duration_minutes AS durationMinutes
       FROM reservations r JOIN reservation_machines rm ON rm.reservation_id = r.id
      WHERE (r.status IN ('provisioning', 'active', 'releasing') OR (r.status = 'scheduled' AND r.start_at < ?))
        ${names ? `AND rm.machine_id IN (SELECT id FROM machines WHERE name IN (${placeholders(names.length)}))` : ''}`,
    [sqlTime(new Date(until)), ...(names ?? [])],
  );

  const windowsOf = new Map<string, HeldWindow[]>();
  for (const row of windowRows) {
    const window = windowOf(row, now, allowance);
    if (window.end <= now || window.start >= until || window.end <= window.start) continue;
    const list = windowsOf.get(row.machineId);
    if (list) list.push(window);
    else windowsOf.set(row.machineId, [window]);
  }

  return machineRows.map((m) => {
    const busy = (windowsOf.get(m.id) ?? []).sort((a, b) => a.start - b.start);
    const inPool = m.status === 'available' || m.status === 'reserved';
    const heldNow = busy.some((w) => w.start <= now && w.end > now);
    const freeNow = m.status === 'available' && m.reservationId === null && !heldNow;
    if (inPool && !freeNow && !heldNow) {
      busy.unshift({ start: now, end: now + allowance, status: 'releasing', reservationId: null, userId: null, owner: null });
    }
    return {
      id: m.id,
      name: m.name,
      type: m.type,
      tags: jsonOf<Record<string, string> | null>(m.tags) ?? {},
      status: m.status,
      inPool,
      freeNow,
      busy,
    };
  });
}

function windowOf(row: WindowRow, now: number, allowanceMs: number): HeldWindow {
  const holder = { status: row.status, reservationId: row.reservationId, userId: row.userId, owner: row.owner };
  const durationMs = row.durationMinutes * 60_000;
  switch (row.status) {
    case 'scheduled': {
      const start = msOf(row.startAt!);
      return { start, end: row.expiresAt ? msOf(row.expiresAt) : start + durationMs, ...holder };
    }
    case 'releasing':
      return { start: now, end: now + allowanceMs, ...holder };
    default: {
      const end = row.expiresAt ? msOf(row.expiresAt) : now + durationMs;
      // Run out, and the reservation job has not released it yet: it soon will.
      return { start: now, end: end > now ? end : now + allowanceMs, ...holder };
    }
  }
}


/** The queue in arrival order (created_at, then id: the order every process agrees on). */
export async function readQueue(db: PoolSource): Promise<PlanRequest[]> {
  const rows = await rowsOf<{ id: string; machineCount: number; request: unknown; durationMinutes: number }>(
    db,
    `SELECT id, machine_count AS machineCount, request, duration_minutes AS durationMinutes
       FROM reservations WHERE status = 'queued' ORDER BY created_at, id`,
    [],
  );
  return rows.map((row) => {
    const ask = jsonOf<MachineAsk | null>(row.request) ?? {};
    return {
      id: row.id,
      count: ask.machines?.length ?? ask.count ?? row.machineCount,
      ...(ask.machines && { names: ask.machines }),
      ...(ask.type !== undefined && { type: ask.type }),
      ...(ask.tags && { tags: ask.tags }),
      durationMs: row.durationMinutes * 60_000,
    };
  });
}
