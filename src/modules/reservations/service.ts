// Reservations: N machines for a person for a time, with an account on each. This file
// wires the parts and answers the routes; each part has a file of its own:
//   allocation.ts    claims all requested machines or none, in one transaction
//   provisioning.ts  creates the accounts over SSH and activates, or undoes it all
//   idempotency.ts   the same Idempotency-Key and body give the same outcome
//   leases.ts        a process works on a reservation only under a lease it won
//   unwind.ts        ending a reservation: accounts removed, machines back or offline
//   reconcile.ts     finishing what a crashed process left (run by the job)
// A process works on a reservation only after winning a conditional update, so each one
// is released exactly once even with several processes on one database.
import type { Database } from '../../infra/database.js';
import { AppError } from '../../errors/app-error.js';
import { afterCursorSql, encodeCursor, pageOf } from '../../infra/paging.js';
import { whereAll } from '../../infra/sql-where.js';
import { mapLimit } from '../../shared/map-limit.js';
import type { Principal } from '../../shared/principal.js';
import type { MachineAccess, MachineRow } from '../machines/access.js';
import type { MachineState } from '../machines/state.js';
import { createAllocator } from './allocation.js';
import { createRequestHasher } from './idempotency.js';
import { createLeases } from './leases.js';
import { UNWIND_CONCURRENCY, withMachines, type ReservationLog, type ReservationPolicy, type ReservationRow, type ReservationView } from './model.js';
import { createProvisioner } from './provisioning.js';
import { createReconciler } from './reconcile.js';
import { createUnwinder } from './unwind.js';

export type { CreateReservationInput, ReservationPolicy, ReservationRow, ReservationView } from './model.js';

export interface ReservationsDeps {
  prisma: Database;
  access: MachineAccess;
  state: MachineState;
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

/**
 * A page of reservations with their machines in one round trip, never the machines'
 * credentials. Each reservation's machines come as one GROUP_CONCAT, fields apart by the
 * ASCII unit separator and machines by the record separator (no name, host or key can
 * hold either; a NULL would drop the machine, hence the IFNULL): MariaDB answers this
 * query 1.6 times as often as the same with JSON_ARRAYAGG(JSON_OBJECT(…)) (measured).
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
type ReservationListRow = Omit<ReservationView, 'machines'> & { machines: string | null };

function reservationView(row: ReservationListRow): ReservationView {
  const machines = (row.machines?.split(RECORD) ?? []).map((entry) => {
    const [name, host, port, hostKey] = entry.split(UNIT);
    return { machine: { name: name!, host: host!, port: Number(port), hostKey: hostKey || null } };
  });
  return { ...row, machines };
}

export function createReservationsService(deps: ReservationsDeps) {
  const { prisma, access, state, policy, recycle, log } = deps;
  const leases = createLeases({ prisma, policy, instanceId: deps.instanceId, log });
  const unwinder = createUnwinder({ prisma, access, state, leases, recycle, log });
  const requestHash = createRequestHasher(deps.requestHashKey);
  const allocate = createAllocator({ prisma, state, policy, leases, requestHash, node: deps.node, vmHostDownAfterMs: deps.vmHostDownAfterMs });
  const create = createProvisioner({ prisma, access, state, policy, allocate, leases, unwinder, requestHash });
  const reconcile = createReconciler({ prisma, state, leases, unwinder, log });
  const { unwind, cleanupMachine } = unwinder;
  const { claimForRelease } = leases;

  async function load(id: string): Promise<ReservationRow | null> {
    return prisma.reservation.findUnique({ where: { id }, include: withMachines });
  }

  /** Owner or admin see it; anyone else is told it does not exist. */
  async function visible(actor: Principal, id: string): Promise<ReservationRow> {
    const r = await load(id);
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

    async get(actor: Principal, id: string) {
      return visible(actor, id);
    },

    async list(actor: Principal, q: { all?: boolean; user?: string; status?: ReservationRow['status']; limit: number; cursor?: string }) {
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
      const rows = await prisma.$rows<ReservationListRow>(`${RESERVATION_VIEW_SELECT} ${where.sql} ORDER BY r.created_at DESC, r.id DESC LIMIT ?`, [
        ...where.values,
        q.limit + 1,
      ]);
      return pageOf(rows.map(reservationView), q.limit, encodeCursor);
    },

    async extend(actor: Principal, id: string, minutes: number) {
      const r = await visible(actor, id);
      if (r.status !== 'active' || !r.expiresAt) {
        throw new AppError('reservation_not_active', `the reservation is ${r.status}; only an active one can be extended`);
      }
      if (r.expiresAt.getTime() <= Date.now()) {
        throw new AppError('reservation_expired', 'the reservation has run out and is being released');
      }
      const next = new Date(r.expiresAt.getTime() + minutes * 60_000);
      if (next > r.maxExpiresAt) {
        throw new AppError('exceeds_max_duration', `a reservation may not run past ${r.maxExpiresAt.toISOString()} (${policy.maxTotalMinutes} minutes in all)`, { max_expires_at: r.maxExpiresAt.toISOString() });
      }
      // Compare-and-set on the old expiry: two extensions at once cannot both count from it.
      const { count } = await prisma.reservation.updateMany({
        where: { id, status: 'active', AND: [{ expiresAt: r.expiresAt }, { expiresAt: { gt: new Date() } }] },
        data: { expiresAt: next },
      });
      if (count !== 1) throw new AppError('reservation_changed', 'the reservation changed meanwhile; try again');
      return (await load(id))!;
    },

    /** Early release by the owner or an admin; done when it returns. */
    async release(actor: Principal, id: string) {
      const r = await visible(actor, id);
      if (r.status === 'provisioning') {
        throw new AppError('reservation_provisioning', 'the reservation is still being set up; release it once it is active');
      }
      const reason = actor.userId === r.userId ? 'released' : 'released_by_admin';
      const token = r.status === 'active' ? await claimForRelease(id, reason) : null;
      if (token) await unwind(r, 'released', reason, token);
      return (await load(id))!;
    },

    /** Releases every active reservation (admin), a few at a time. */
    async releaseAll(filter: { userId?: string } = {}) {
      const active = await prisma.reservation.findMany({ where: { status: 'active', ...filter }, select: { id: true, accountUsername: true } });
      let released = 0;
      await mapLimit(active, UNWIND_CONCURRENCY, async (r) => {
        const token = await claimForRelease(r.id, 'released_by_admin');
        if (token) {
          await unwind(r, 'released', 'released_by_admin', token);
          released++;
        }
      });
      return released;
    },

    /** The expiry job's work: release what has run out. Returns how many this process released. */
    async expireDue(): Promise<number> {
      const due = await prisma.reservation.findMany({
        where: { status: 'active', expiresAt: { lte: new Date() } },
        select: { id: true, accountUsername: true },
        take: 200,
      });
      let released = 0;
      await mapLimit(due, UNWIND_CONCURRENCY, async (r) => {
        const token = await claimForRelease(r.id, 'expired', true);
        if (token) {
          await unwind(r, 'released', 'expired', token);
          released++;
        }
      });
      return released;
    },
  };
}

export type ReservationsService = ReturnType<typeof createReservationsService>;
