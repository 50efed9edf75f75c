// Allocation: one transaction that claims every requested machine or none. Candidates are
// read plainly, then locked one by one through the primary key (FOR UPDATE SKIP LOCKED)
// until enough are held, then claimed by a conditional update. A per-user row lock makes
// the per-user machine limit exact. No machine is ever in two live reservations, with any
// number of berth processes, and no request is refused for machines another request was
// only looking at. The events of the new reservation and of its machines are raised once
// the transaction has committed, never for one that rolled back.
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { EventBus } from '../../events/bus.js';
import { AppError } from '../../errors/app-error.js';
import type { Principal } from '../../shared/principal.js';
import { lockUser } from '../identity/queries.js';
import type { MachineRow } from '../machines/access.js';
import type { MachineState } from '../machines/state.js';
import type { RequestHasher } from './idempotency.js';
import type { CreateReservationInput, ReservationPolicy } from './model.js';
import { candidateMachines, lockIfAvailable, machinesHeldBy } from './queries.js';
import type { ReservationStatusWriter } from './status.js';

export interface AllocatorDeps {
  prisma: PrismaClient;
  events: Pick<EventBus, 'afterCommit'>;
  state: Pick<MachineState, 'claim'>;
  status: Pick<ReservationStatusWriter, 'open'>;
  policy: Pick<ReservationPolicy, 'maxMachinesPerUser'>;
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
}

/** A new `provisioning` reservation: its id, the lease it starts under, and its machines. */
export interface Allocated {
  id: string;
  token: string;
  /**
   * The claimed machines in name order, as read under their lock (credentials, host keys,
   * sudo): what setting up the accounts needs. Read before the claim, which changed only
   * their status and link.
   */
  machines: MachineRow[];
}

export function createAllocator({ prisma, events, state, status, policy, requestHash, node, vmHostDownAfterMs }: AllocatorDeps) {
  /** Claims the machines for a new `provisioning` reservation of `actor`. */
  return async function allocate(actor: Principal, a: Allocation): Promise<Allocated> {
    const names = a.input.machines;
    const want = names?.length ?? a.input.count ?? 1;

    return events.afterCommit((record) =>
      prisma.$transaction(async (tx) => {
        // One allocation per user at a time, so two requests cannot both pass the per-user limit.
        await lockUser(tx, actor.userId);
        const held = await machinesHeldBy(tx, actor.userId);
        if (held + want > policy.maxMachinesPerUser) {
          throw new AppError('machine_limit_exceeded', `you hold ${held} machines; at most ${policy.maxMachinesPerUser} at once`);
        }
        if (names) {
          const known = await tx.machine.findMany({ where: { name: { in: names } }, select: { name: true } });
          const unknown = names.filter((n) => !known.some((k) => k.name === n));
          if (unknown.length) throw new AppError('machine_not_found', `no machine named ${unknown.join(', ')}`);
        }
        const candidates = await candidateMachines(tx, a.input, node, vmHostDownAfterMs);
        const machines: MachineRow[] = [];
        for (const c of candidates) {
          if (machines.length === want) break;
          const locked = await lockIfAvailable(tx, c.id);
          if (locked) machines.push(locked);
        }
        if (machines.length < want) {
          throw new AppError('insufficient_capacity', `asked for ${want} machine(s); ${candidates.length} matching machine(s) available`, {
            available: candidates.length,
            requested: want,
          });
        }
        const { id, token } = await status.open(tx, record, {
          userId: actor.userId,
          ownerUsername: actor.username,
          accountUsername: a.account,
          durationMinutes: a.durationMinutes,
          machineIds: machines.map((m) => m.id),
          idempotencyKey: a.idempotencyKey ?? null,
          requestHash: a.idempotencyKey ? requestHash(a.input) : null,
        });
        const claimed = await state.claim(tx, machines.map((m) => m.id), id, record);
        if (claimed !== want) throw new Error(`claimed ${claimed} of ${want} locked machines`);
        return { id, token, machines };
        // READ COMMITTED: the candidate read sees what other allocations have committed.
      }, { isolationLevel: 'ReadCommitted' }),
    );
  };
}

export type Allocate = ReturnType<typeof createAllocator>;
