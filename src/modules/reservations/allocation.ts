// Allocation: the decision on a new request, in one transaction under the planner row
// (decisions.ts), so that decisions are made one at a time across processes.
// Every request is a window of time on N machines, and one planner (planner.ts) places it:
//   now      it fits at once, behind every queued request's planned window (a later request
//            may start first only where that delays no earlier one): its machines are
//            locked through their primary key and claimed, all or none → `provisioning`;
//   wait     it does not fit yet → `queued`, with the planner's estimate of its start;
//   book     it fits at `start_at` on concrete machines → `scheduled` (queued estimates do
//            not count: only live reservations and other bookings);
// otherwise 409 `insufficient_capacity` with `earliest_start`. A per-user row lock makes the
// per-user machine limit exact, counting queued and scheduled machines. The new
// reservation's events (and its machines') are raised once the transaction has committed.
import type { Prisma } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import type { Principal } from '../../shared/principal.js';
import { lockUser } from '../identity/queries.js';
import type { MachineRow } from '../machines/access.js';
import type { MachineState } from '../machines/state.js';
import type { RequestHasher } from './idempotency.js';
import { machineRequestOf, type CreateReservationInput, type ReservationPolicy } from './model.js';
import { earliestPlacement, matches, placementAt, planQueue, type PlanMachine, type PlanRequest } from './planner.js';
import type { Decide } from './decisions.js';
import { latestWaitEnd, lockIfAvailable, machinesHeldBy, unreachableVms } from './queries.js';
import type { ReservationStatusWriter, SealedAccount } from './status.js';
import { readPool, readQueue } from './windows.js';

export interface AllocatorDeps {
  decide: Decide;
  state: Pick<MachineState, 'claim'>;
  status: Pick<ReservationStatusWriter, 'open' | 'openQueued' | 'openScheduled'>;
  policy: Pick<ReservationPolicy, 'maxMachinesPerUser' | 'bookingHorizonDays' | 'maxMinutes'>;
  requestHash: RequestHasher;
  /** This host's name, and how long a VM host may stay silent before it counts as down. */
  node: string;
  vmHostDownAfterMs: number;
}

export interface Allocation {
  input: CreateReservationInput;
  account: string;
  durationMinutes: number;
  idempotencyKey?: string;
  /** The account's secrets, sealed, for a request that may not start now (wait or booking). */
  sealed?: SealedAccount;
}

/** What became of a new request. */
export type Decision =
  /**
   * A new `provisioning` reservation: its id, the lease it starts under, and the claimed
   * machines in name order, as read under their lock (credentials, host keys, sudo): what
   * setting up the accounts needs.
   */
  | { kind: 'claimed'; id: string; token: string; machines: MachineRow[] }
  | { kind: 'queued'; id: string }
  | { kind: 'scheduled'; id: string };

/** Everything the scheduler and allocation plan with: the pool's windows, less what cannot be reached. */
export async function usablePool(tx: Prisma.TransactionClient, opts: { now: number; until: number; node: string; vmHostDownAfterMs: number }): Promise<PlanMachine[]> {
  const [pool, unreachable] = await Promise.all([readPool(tx, { now: opts.now, until: opts.until }), unreachableVms(tx, opts.node, opts.vmHostDownAfterMs)]);
  const away = new Set(unreachable);
  return pool.map((m) => (away.has(m.id) ? { ...m, inPool: false, freeNow: false } : m));
}

const insufficient = (want: number, available: number, earliest: number | null) =>
  new AppError('insufficient_capacity', `asked for ${want} machine(s); ${available} matching machine(s) available`, {
    available,
    requested: want,
    earliest_start: earliest === null ? null : new Date(earliest).toISOString(),
  });

export function createAllocator({ decide, state, status, policy, requestHash, node, vmHostDownAfterMs }: AllocatorDeps) {
  const horizonMs = policy.bookingHorizonDays * 24 * 60 * 60_000;
  const maxDurationMs = policy.maxMinutes * 60_000;

  /** Decides `actor`'s request: claimed now, queued, booked, or refused. */
  return async function allocate(actor: Principal, a: Allocation): Promise<Decision> {
    const names = a.input.machines;
    const want = names?.length ?? a.input.count ?? 1;
    const durationMs = a.durationMinutes * 60_000;
    const match = machineRequestOf(a.input);
    const request: PlanRequest = { id: 'new', count: want, durationMs, ...(names && { names }), ...(match.type !== undefined && { type: match.type }), ...(match.tags && { tags: match.tags }) };
    const base = {
      userId: actor.userId,
      ownerUsername: actor.username,
      accountUsername: a.account,
      durationMinutes: a.durationMinutes,
      idempotencyKey: a.idempotencyKey ?? null,
      requestHash: a.idempotencyKey ? requestHash(a.input) : null,
    };

    return decide(async (tx, record): Promise<Decision> => {
      // One allocation per user at a time, so two requests cannot both pass the per-user limit.
      await lockUser(tx, actor.userId);
      const held = await machinesHeldBy(tx, actor.userId);
      if (held + want > policy.maxMachinesPerUser) {
        throw new AppError('machine_limit_exceeded', `you hold or wait for ${held} machines; at most ${policy.maxMachinesPerUser} at once`);
      }
      if (names) {
        const known = await tx.machine.findMany({ where: { name: { in: names } }, select: { name: true } });
        const unknown = names.filter((n) => !known.some((k) => k.name === n));
        if (unknown.length) throw new AppError('machine_not_found', `no machine named ${unknown.join(', ')}`);
      }
      const now = Date.now();
      const horizon = now + horizonMs;
      const pool = (until: number) => usablePool(tx, { now, until, node, vmHostDownAfterMs });

      if (a.input.start_at) {
        const start = Date.parse(a.input.start_at);
        const machines = await pool(start + durationMs);
        const placed = placementAt(machines, request, { now, start });
        if (!placed) {
          const later = earliestPlacement(await pool(horizon + durationMs), request, { now, from: start, horizon });
          throw insufficient(want, freeNowMatching(machines, request), later?.start ?? null);
        }
        const id = await status.openScheduled(tx, record, { ...base, ...a.sealed!, machineIds: placed.machineIds, startAt: new Date(start), request: match });
        return { kind: 'scheduled', id };
      }

      // Behind the queue: what it waits for is planned first, and this request fits around it.
      // The plan reaches as far as anything queued may still start (the end of the longest
      // wait, this request's own included), not the whole booking horizon: nothing queued
      // starts after its wait, and the bookings beyond it would be read for nothing.
      const queue = await readQueue(tx);
      const wait = a.input.wait_minutes;
      const waitsEnd = Math.max(wait === undefined ? now : now + wait * 60_000, queue.length ? ((await latestWaitEnd(tx)) ?? now) : now);
      const planUntil = Math.min(horizon, waitsEnd);
      const planned = async (until: number) => {
        const machines = await pool(until + (queue.length ? maxDurationMs : durationMs));
        return queue.length ? planQueue(machines, queue, { now, horizon: until }).machines : machines;
      };
      const machines = await planned(planUntil);
      let placed = earliestPlacement(machines, request, { now, from: now, horizon: planUntil });

      if (placed && placed.start <= now) {
        const locked: MachineRow[] = [];
        for (const id of placed.machineIds) {
          const m = await lockIfAvailable(tx, id);
          if (m) locked.push(m);
        }
        // Under the planner row a free machine stays free, but an admin may have taken one
        // out of the pool meanwhile (maintenance is not a planning decision): not now.
        if (locked.length === want) {
          const { id, token } = await status.open(tx, record, { ...base, now, machineIds: locked.map((m) => m.id) });
          const claimed = await state.claim(tx, locked.map((m) => m.id), id, record);
          if (claimed !== want) throw new Error(`claimed ${claimed} of ${want} locked machines`);
          return { kind: 'claimed', id, token, machines: locked.sort((x, y) => x.name.localeCompare(y.name)) };
        }
        placed = null;
      }
      if (wait === undefined) {
        // Refused now: say when it could start, from the plan over the whole horizon.
        const later = earliestPlacement(await planned(horizon), request, { now, from: now, horizon });
        throw insufficient(want, freeNowMatching(machines, request), later?.start ?? null);
      }
      const id = await status.openQueued(tx, record, {
        ...base,
        ...a.sealed!,
        request: match,
        machineCount: want,
        waitUntil: new Date(now + wait * 60_000),
        estimatedStart: placed ? new Date(placed.start) : null,
      });
      return { kind: 'queued', id };
    });
  };
}

/** How many machines that match `request` are free now (what a refusal reports as `available`). */
const freeNowMatching = (machines: PlanMachine[], request: PlanRequest) => machines.filter((m) => m.freeNow && m.inPool && matches(m, request)).length;

export type Allocate = ReturnType<typeof createAllocator>;
