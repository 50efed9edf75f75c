// Allocation: one transaction that claims every requested machine or none. Candidates are
// read plainly, then locked one by one through the primary key (FOR UPDATE SKIP LOCKED)
// until enough are held, then claimed by a conditional update. A per-user row lock makes
// the per-user machine limit exact. No machine is ever in two live reservations, with any
// number of berth processes, and no request is refused for machines another request was
// only looking at.
import { randomUUID } from 'node:crypto';
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import type { Principal } from '../../shared/principal.js';
import { lockUser } from '../identity/queries.js';
import type { MachineState } from '../machines/state.js';
import type { RequestHasher } from './idempotency.js';
import type { Leases } from './leases.js';
import type { CreateReservationInput, ReservationPolicy } from './model.js';

export interface AllocatorDeps {
  prisma: PrismaClient;
  state: Pick<MachineState, 'claim'>;
  policy: Pick<ReservationPolicy, 'maxMachinesPerUser' | 'maxTotalMinutes'>;
  leases: Pick<Leases, 'leaseUntil'>;
  requestHash: RequestHasher;
  /** This host's name, and how long a VM host may stay silent before it counts as down. */
  node: string;
  vmHostDownAfterMs: number;
}

export interface Allocation {
  input: CreateReservationInput;
  account: string;
  durationMinutes: number;
  /** The lease the new reservation starts under (`provisioning`). */
  token: string;
  idempotencyKey?: string;
}

/** The conditions a machine must meet for this request, past being available. */
function matching(input: CreateReservationInput, node: string, vmHostDownAfterMs: number): Prisma.Sql {
  const filters: Prisma.Sql[] = [];
  if (input.machines) filters.push(Prisma.sql`AND name IN (${Prisma.join(input.machines)})`);
  if (input.type) filters.push(Prisma.sql`AND type = ${input.type}`);
  for (const [k, v] of Object.entries(input.tags ?? {})) {
    filters.push(Prisma.sql`AND JSON_UNQUOTE(JSON_EXTRACT(tags, ${`$."${k}"`})) = ${v}`);
  }
  // A VM of another host only while that host is up and its VMs' SSH is published beyond
  // its loopback (BERTH_VM_PUBLIC_HOST): the account is made, and used, from elsewhere.
  const upSince = new Date(Date.now() - vmHostDownAfterMs);
  filters.push(Prisma.sql`AND NOT EXISTS (
    SELECT 1 FROM vms v LEFT JOIN vm_hosts h ON h.name = v.node
     WHERE v.machine_id = machines.id AND v.node <> ${node}
       AND (h.name IS NULL OR h.heartbeat_at < ${upSince} OR h.public_host LIKE '127.%' OR h.public_host = 'localhost'))`);
  return Prisma.join(filters, ' ');
}

export function createAllocator({ prisma, state, policy, leases, requestHash, node, vmHostDownAfterMs }: AllocatorDeps) {
  /** Claims the machines for a new `provisioning` reservation of `actor`; its id. */
  return async function allocate(actor: Principal, a: Allocation): Promise<string> {
    const names = a.input.machines;
    const want = names?.length ?? a.input.count ?? 1;
    const where = matching(a.input, node, vmHostDownAfterMs);

    return prisma.$transaction(async (tx) => {
      // One allocation per user at a time, so two requests cannot both pass the per-user limit.
      await lockUser(tx, actor.userId);
      const [held] = await tx.$queryRaw<{ n: bigint }[]>`
        SELECT COUNT(*) AS n FROM reservation_machines rm JOIN reservations r ON r.id = rm.reservation_id
         WHERE r.user_id = ${actor.userId} AND r.status IN ('provisioning', 'active', 'releasing')`;
      if (Number(held?.n ?? 0) + want > policy.maxMachinesPerUser) {
        throw new AppError('machine_limit_exceeded', `you hold ${Number(held?.n ?? 0)} machines; at most ${policy.maxMachinesPerUser} at once`);
      }
      if (names) {
        const known = await tx.machine.findMany({ where: { name: { in: names } }, select: { name: true } });
        const unknown = names.filter((n) => !known.some((k) => k.name === n));
        if (unknown.length) throw new AppError('machine_not_found', `no machine named ${unknown.join(', ')}`);
      }
      // Candidates by a plain read, then locked one by one through the primary key: a scan
      // with FOR UPDATE would lock every row it examines (tag filters cannot use an index),
      // making concurrent requests skip machines nobody is taking.
      const candidates = await tx.$queryRaw<{ id: string }[]>`
        SELECT id FROM machines WHERE status = 'available' ${where} ORDER BY name`;
      const rows: { id: string }[] = [];
      for (const c of candidates) {
        if (rows.length === want) break;
        const got = await tx.$queryRaw<{ id: string }[]>`
          SELECT id FROM machines WHERE id = ${c.id} AND status = 'available' FOR UPDATE SKIP LOCKED`;
        rows.push(...got);
      }
      if (rows.length < want) {
        throw new AppError('insufficient_capacity', `asked for ${want} machine(s); ${candidates.length} matching machine(s) available`, {
          available: candidates.length,
          requested: want,
        });
      }
      const id = randomUUID();
      await tx.reservation.create({
        data: {
          id,
          userId: actor.userId,
          ownerUsername: actor.username,
          status: 'provisioning',
          accountUsername: a.account,
          durationMinutes: a.durationMinutes,
          maxExpiresAt: new Date(Date.now() + policy.maxTotalMinutes * 60_000),
          leaseOwner: a.token,
          leaseUntil: leases.leaseUntil(),
          idempotencyKey: a.idempotencyKey ?? null,
          requestHash: a.idempotencyKey ? requestHash(a.input) : null,
          machines: { create: rows.map((r) => ({ machineId: r.id })) },
        },
      });
      const claimed = await state.claim(tx, rows.map((r) => r.id), id, () => {});
      if (claimed !== want) throw new Error(`claimed ${claimed} of ${want} locked machines`);
      return id;
      // READ COMMITTED: the candidate read sees what other allocations have committed.
    }, { isolationLevel: 'ReadCommitted' });
  };
}

export type Allocate = ReturnType<typeof createAllocator>;
