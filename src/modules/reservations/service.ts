// Reservations: N machines for a person for a time, with an account on each.
//
// Allocation is one transaction that claims every requested machine or none
// (FOR UPDATE SKIP LOCKED, then a conditional update). The SSH work happens outside it,
// on all machines in parallel, while the reservation sits in the durable state
// `provisioning` under a lease held by this process. Any way a reservation ends —
// release, expiry, failed provisioning, a crash cleaned up later — goes through
// `unwind`: remove the accounts, give the machines back (or take them offline when they
// cannot be cleaned), record the final state. A process works on a reservation only
// after winning a conditional update, so each one is released exactly once even with
// several processes on one database.
import { isUniqueViolation } from '../../infra/database.js';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import { DatabaseUnavailableError } from '../../infra/database.js';
import { AppError } from '../../errors/app-error.js';
import type { Principal } from '../../shared/principal.js';
import type { MachineAccess, MachineRow } from '../machines/access.js';
import { AccountError, RESERVED_ACCOUNT_NAMES, createAccount, removeAccount } from './accounts.js';
import { afterCursor, encodeCursor, pageOf } from '../../infra/paging.js';

export interface ReservationPolicy {
  defaultMinutes: number;
  maxMinutes: number;
  maxTotalMinutes: number;
  maxMachinesPerUser: number;
  leaseSeconds: number;
}

export interface ReservationsDeps {
  prisma: PrismaClient;
  access: MachineAccess;
  policy: ReservationPolicy;
  /** Names this process in leases: who is working on a reservation. */
  instanceId: string;
  /** Keys the HMAC of idempotent request bodies (which may hold a password). */
  requestHashKey: Buffer;
  /** This host's name: only VMs running here are handed out by this process (their SSH is on its loopback). */
  node: string;
  /** Resets `machine` when it is a VM (true); false for any other machine (vms service). */
  recycle(machine: MachineRow, reservationId: string): Promise<boolean>;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export interface CreateReservationInput {
  count?: number;
  machines?: string[];
  type?: string;
  tags?: Record<string, string>;
  duration_minutes?: number;
  username?: string;
  password?: string;
  ssh_public_key?: string;
}

const withMachines = { machines: { include: { machine: true } } } as const;
export type ReservationRow = Prisma.ReservationGetPayload<{ include: typeof withMachines }>;

const notFound = () => new AppError('reservation_not_found', 'no such reservation');

/** 24 characters of base64url: 144 bits. */
function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

/** JSON with object keys sorted at every depth, so equal bodies give equal strings. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function mapLimit<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

const LIVE_STATUSES = ['provisioning', 'active', 'releasing'];
/** Reservations ended at once per process: each holds one SSH session per machine. */
const UNWIND_CONCURRENCY = 8;
/** How often an offline machine with a leftover account is retried by the job. */
const CLEANUP_RETRY_MS = 5 * 60_000;

export function createReservationsService(deps: ReservationsDeps) {
  const { prisma, access, policy, instanceId, recycle, log } = deps;
  const leaseUntil = () => new Date(Date.now() + policy.leaseSeconds * 1000);
  /** Every claim gets its own token: a takeover by this same process is still a different owner. */
  const newLease = () => `${instanceId}/${randomUUID().slice(0, 8)}`;
  const requestHash = (input: CreateReservationInput) =>
    createHmac('sha256', deps.requestHashKey).update(canonicalJson(input)).digest('hex');

  /** Keeps the lease alive while `work` runs, so a slow machine is not mistaken for a crash. */
  async function underLease<T>(id: string, token: string, work: () => Promise<T>): Promise<T> {
    const timer = setInterval(() => {
      void prisma.reservation
        .updateMany({ where: { id, leaseOwner: token }, data: { leaseUntil: leaseUntil() } })
        .catch((err: unknown) => log.warn({ err, reservation: id }, 'could not renew a lease'));
    }, (policy.leaseSeconds * 1000) / 3);
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }

  async function load(id: string): Promise<ReservationRow | null> {
    return prisma.reservation.findUnique({ where: { id }, include: withMachines });
  }

  /** Owner or admin see it; anyone else is told it does not exist. */
  async function visible(actor: Principal, id: string): Promise<ReservationRow> {
    const r = await load(id);
    if (!r || (r.userId !== actor.userId && actor.role !== 'admin')) throw notFound();
    return r;
  }

  /**
   * Ends a reservation whose lease `token` this process holds: removes the account from
   * every machine (in parallel), frees the machines that are clean, and takes offline
   * those that are not — keeping their reservation id as a pending-cleanup record that
   * `cleanupMachine` (the job, or an admin's check) retries. `existedBefore` names machines
   * where the account was there before berth (nothing of berth's to remove).
   */
  async function unwind(
    r: { id: string; accountUsername: string },
    final: 'released' | 'failed',
    reason: string,
    token: string,
    existedBefore: ReadonlySet<string> = new Set(),
  ): Promise<void> {
    const machines = await prisma.machine.findMany({ where: { allocations: { some: { reservationId: r.id } } } });
    await underLease(r.id, token, () =>
      Promise.all(
        machines.map(async (m) => {
          let problem: string | null = null;
          try {
            // A VM is reset instead: nothing of this reservation survives, whatever root did
            // inside; its machine rejoins the pool once the VM has booted clean.
            if (await recycle(m, r.id)) return;
            const ssh = await access.open(m);
            try {
              const outcome = await removeAccount(ssh, { username: r.accountUsername, reservationId: r.id });
              if (outcome === 'not-ours' && !existedBefore.has(m.id)) {
                problem = `the account ${r.accountUsername} no longer carries this reservation's ownership record`;
              }
            } finally {
              ssh.close();
            }
          } catch (err) {
            problem = (err as Error).message;
          }
          if (problem === null) {
            await prisma.machine.updateMany({
              where: { id: m.id, reservationId: r.id },
              data: { status: 'available', reservationId: null, statusReason: null },
            });
          } else {
            log.warn({ machine: m.name, reservation: r.id, err: problem }, 'could not remove a reservation account');
            await prisma.machine.updateMany({
              where: { id: m.id, OR: [{ reservationId: r.id }, { reservationId: null }] },
              data: {
                status: 'offline',
                reservationId: r.id,
                lastCheckedAt: new Date(),
                statusReason: `cleanup pending: account ${r.accountUsername} of reservation ${r.id}: ${problem}`.slice(0, 255),
              },
            });
          }
        }),
      ),
    );
    const { count } = await prisma.reservation.updateMany({
      where: { id: r.id, leaseOwner: token },
      data: {
        status: final,
        releasedAt: new Date(),
        leaseUntil: null,
        ...(final === 'failed' ? { failureReason: reason.slice(0, 1024) } : { releaseReason: reason }),
      },
    });
    if (count !== 1) log.warn({ reservation: r.id }, 'lost the lease while ending a reservation; its new owner finishes it');
  }

  /** Claims an active reservation for release; the lease token when this process won it. */
  async function claimForRelease(id: string, reason: string, onlyIfExpired = false): Promise<string | null> {
    const token = newLease();
    const { count } = await prisma.reservation.updateMany({
      where: { id, status: 'active', ...(onlyIfExpired && { expiresAt: { lte: new Date() } }) },
      data: { status: 'releasing', releaseReason: reason, leaseOwner: token, leaseUntil: leaseUntil() },
    });
    return count === 1 ? token : null;
  }

  async function allocate(actor: Principal, input: CreateReservationInput, account: string, duration: number, token: string, key?: string) {
    const names = input.machines;
    const want = names?.length ?? input.count ?? 1;
    const filters: Prisma.Sql[] = [];
    if (names) filters.push(Prisma.sql`AND name IN (${Prisma.join(names)})`);
    if (input.type) filters.push(Prisma.sql`AND type = ${input.type}`);
    for (const [k, v] of Object.entries(input.tags ?? {})) {
      filters.push(Prisma.sql`AND JSON_UNQUOTE(JSON_EXTRACT(tags, ${`$."${k}"`})) = ${v}`);
    }
    filters.push(Prisma.sql`AND NOT EXISTS (SELECT 1 FROM vms v WHERE v.machine_id = machines.id AND v.node <> ${deps.node})`);
    const where = Prisma.join(filters, ' ');

    return prisma.$transaction(async (tx) => {
      // One allocation per user at a time, so two requests cannot both pass the per-user limit.
      await tx.$queryRaw`SELECT id FROM users WHERE id = ${actor.userId} FOR UPDATE`;
      const [held] = await tx.$queryRaw<{ n: bigint }[]>`
        SELECT COUNT(*) AS n FROM reservation_machines rm JOIN reservations r ON r.id = rm.reservation_id
         WHERE r.user_id = ${actor.userId} AND r.status IN ('provisioning', 'active', 'releasing')`;
      if (Number(held?.n ?? 0) + want > policy.maxMachinesPerUser) {
        throw new AppError(
          'machine_limit_exceeded',
          `you hold ${Number(held?.n ?? 0)} machines; at most ${policy.maxMachinesPerUser} at once`,
        );
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
      const now = Date.now();
      await tx.reservation.create({
        data: {
          id,
          userId: actor.userId,
          ownerUsername: actor.username,
          status: 'provisioning',
          accountUsername: account,
          durationMinutes: duration,
          maxExpiresAt: new Date(now + policy.maxTotalMinutes * 60_000),
          leaseOwner: token,
          leaseUntil: leaseUntil(),
          idempotencyKey: key ?? null,
          requestHash: key ? requestHash(input) : null,
          machines: { create: rows.map((r) => ({ machineId: r.id })) },
        },
      });
      const claimed = await tx.machine.updateMany({
        where: { id: { in: rows.map((r) => r.id) }, status: 'available' },
        data: { status: 'reserved', reservationId: id, statusReason: null },
      });
      if (claimed.count !== want) throw new Error(`claimed ${claimed.count} of ${want} locked machines`);
      return id;
      // READ COMMITTED: the candidate read sees what other allocations have committed.
    }, { isolationLevel: 'ReadCommitted' });
  }

  /** Creates the account on one machine; a name already there fails with AccountError code 'exists'. */
  async function provision(machine: MachineRow, account: { username: string; reservationId: string; password?: string; sshPublicKey?: string }) {
    const ssh = await access.open(machine);
    try {
      await createAccount(ssh, { ...account, grantSudo: machine.allowSudo });
    } finally {
      ssh.close();
    }
  }

  /**
   * For a machine taken offline with a pending-cleanup record: 'live' when its reservation
   * is still live (nothing to clean), else removes the leftover account and frees it.
   * Throws when the machine still cannot be cleaned.
   */
  async function cleanupMachine(m: MachineRow): Promise<'clean' | 'live'> {
    if (m.reservationId) {
      const r = await prisma.reservation.findUnique({ where: { id: m.reservationId }, select: { id: true, status: true, accountUsername: true } });
      if (r && LIVE_STATUSES.includes(r.status)) return 'live';
      if (await recycle(m, m.reservationId)) return 'clean';
      if (r) {
        const ssh = await access.open(m);
        try {
          if ((await removeAccount(ssh, { username: r.accountUsername, reservationId: r.id })) === 'not-ours') {
            throw new Error(`the account ${r.accountUsername} no longer carries this reservation's ownership record`);
          }
        } finally {
          ssh.close();
        }
      }
    }
    await prisma.machine.updateMany({
      where: { id: m.id, status: 'offline', reservationId: m.reservationId },
      data: { status: 'available', reservationId: null, statusReason: null, lastCheckedAt: new Date() },
    });
    return 'clean';
  }

  /** The answer to a repeated Idempotency-Key: the same outcome, or 422 for another body. */
  function replay(existing: ReservationRow, input: CreateReservationInput) {
    if (existing.requestHash !== requestHash(input)) {
      throw new AppError('idempotency_key_reused', 'this Idempotency-Key was used with a different request');
    }
    if (existing.status === 'provisioning') {
      throw new AppError('request_in_progress', 'the request with this Idempotency-Key is still being processed; retry shortly');
    }
    if (existing.status === 'failed') {
      throw new AppError('provisioning_failed', existing.failureReason ?? 'the reservation failed', { reservation_id: existing.id });
    }
    return { reservation: existing, password: undefined, replayed: true };
  }

  return {
    cleanupMachine,

    /**
     * All-or-nothing: claims the machines, creates the account on each in parallel, and
     * either activates the reservation or undoes everything and says which machine failed.
     */
    async create(actor: Principal, input: CreateReservationInput, idempotencyKey?: string) {
      const duration = input.duration_minutes ?? policy.defaultMinutes;
      if (duration > policy.maxMinutes) {
        throw new AppError('exceeds_max_duration', `a reservation may last at most ${policy.maxMinutes} minutes`);
      }
      const account = input.username ?? actor.username;
      if (RESERVED_ACCOUNT_NAMES.has(account)) {
        throw new AppError('account_name_reserved', `"${account}" is a system name; choose another with "username"`);
      }
      if (idempotencyKey) {
        const existing = await prisma.reservation.findUnique({
          where: { userId_idempotencyKey: { userId: actor.userId, idempotencyKey } },
          include: withMachines,
        });
        if (existing) return replay(existing, input);
      }
      const generated = input.password || input.ssh_public_key ? undefined : generatePassword();
      const password = input.password ?? generated;

      const token = newLease();
      let id: string;
      try {
        id = await allocate(actor, input, account, duration, token, idempotencyKey);
      } catch (err) {
        // The same key raced in from another request: answer as a replay of the winner.
        if (idempotencyKey && isUniqueViolation(err)) {
          const winner = await prisma.reservation.findUniqueOrThrow({
            where: { userId_idempotencyKey: { userId: actor.userId, idempotencyKey } },
            include: withMachines,
          });
          return replay(winner, input);
        }
        throw err;
      }

      const machines = await prisma.machine.findMany({ where: { reservationId: id }, orderBy: { name: 'asc' } });
      const results = await underLease(id, token, () =>
        Promise.allSettled(
          machines.map((m) => provision(m, { username: account, reservationId: id, password, sshPublicKey: input.ssh_public_key })),
        ),
      );
      const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [{ machine: machines[i]!, error: r.reason as Error }] : []));

      if (failures.length === 0) {
        const now = Date.now();
        // Only for a user who still exists: one deleted meanwhile gets nothing.
        const { count } = await prisma.reservation.updateMany({
          where: { id, status: 'provisioning', leaseOwner: token, userId: { not: null } },
          data: { status: 'active', activatedAt: new Date(now), expiresAt: new Date(now + duration * 60_000), leaseUntil: null },
        });
        // Only a password berth made up is shown (once); the user knows their own.
        if (count === 1) return { reservation: (await load(id))!, password: generated, replayed: false };
        const current = await prisma.reservation.findUnique({ where: { id }, select: { leaseOwner: true } });
        if (current?.leaseOwner !== token) {
          // The lease ran out, which means its renewals failed (the database was away): the
          // worker that took the reservation over rolls it back.
          throw new DatabaseUnavailableError('the database was unavailable while the reservation was set up; it is being rolled back');
        }
        failures.push({ machine: machines[0]!, error: new Error('the user was deleted while the reservation was being set up') });
      }

      const first = failures[0]!;
      const detail = `could not set up the account on ${first.machine.name}: ${first.error.message}`;
      const existedBefore = new Set(failures.filter((f) => f.error instanceof AccountError && f.error.code === 'exists').map((f) => f.machine.id));
      await unwind({ id, accountUsername: account }, 'failed', detail, token, existedBefore);
      throw new AppError('provisioning_failed', detail, { machine: first.machine.name, reservation_id: id, failed_machines: failures.map((f) => f.machine.name) });
    },

    async get(actor: Principal, id: string) {
      return visible(actor, id);
    },

    async list(actor: Principal, q: { all?: boolean; user?: string; status?: ReservationRow['status']; limit: number; cursor?: string }) {
      if ((q.all || q.user) && actor.role !== 'admin') {
        throw new AppError('admin_required', 'only an admin may list other people’s reservations');
      }
      const owner = q.all ? {} : q.user ? { ownerUsername: q.user } : { userId: actor.userId };
      const rows = await prisma.reservation.findMany({
        where: { ...owner, ...(q.status && { status: q.status }), ...afterCursor(q.cursor) },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: q.limit + 1,
        include: withMachines,
      });
      return pageOf(rows, q.limit, encodeCursor);
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

    /**
     * Finishes or undoes what a crashed (or too slow) process left: reservations whose lease
     * ran out while provisioning are rolled back, those left releasing are released, and
     * machines held by no live reservation go back to the pool.
     */
    async reconcile(): Promise<{ rolledBack: number; finished: number; freed: number }> {
      const now = new Date();
      const stale = await prisma.reservation.findMany({
        where: { status: { in: ['provisioning', 'releasing'] }, leaseUntil: { lt: now } },
        select: { id: true, status: true, accountUsername: true, releaseReason: true },
      });
      let rolledBack = 0;
      let finished = 0;
      await mapLimit(stale, UNWIND_CONCURRENCY, async (r) => {
        const token = newLease();
        const { count } = await prisma.reservation.updateMany({
          where: { id: r.id, status: r.status, leaseUntil: { lt: now } },
          data: { leaseOwner: token, leaseUntil: leaseUntil() },
        });
        if (count !== 1) return;
        if (r.status === 'provisioning') {
          await unwind(r, 'failed', 'interrupted while setting up (berth stopped); rolled back', token);
          rolledBack++;
        } else {
          await unwind(r, 'released', r.releaseReason ?? 'released', token);
          finished++;
        }
        log.info({ reservation: r.id, was: r.status }, 'reconciled an interrupted reservation');
      });
      // Active reservations of users deleted meanwhile (one was being set up while its user
      // went): nobody may hold machines for them.
      const orphaned = await prisma.reservation.findMany({ where: { status: 'active', userId: null }, select: { id: true, accountUsername: true } });
      await mapLimit(orphaned, UNWIND_CONCURRENCY, async (r) => {
        const token = await claimForRelease(r.id, 'user_deleted');
        if (token) await unwind(r, 'released', 'user_deleted', token);
      });
      // Offline machines that still hold an account of an ended reservation: try again now and then.
      const pending = await prisma.machine.findMany({
        where: {
          status: 'offline',
          reservationId: { not: null },
          OR: [{ lastCheckedAt: null }, { lastCheckedAt: { lt: new Date(Date.now() - CLEANUP_RETRY_MS) } }],
        },
        take: 50,
      });
      await mapLimit(pending, UNWIND_CONCURRENCY, async (m) => {
        await cleanupMachine(m).catch(async (err: Error) => {
          await prisma.machine.update({ where: { id: m.id }, data: { lastCheckedAt: new Date() } });
          log.warn({ machine: m.name, err: err.message }, 'cleanup still failing');
        });
      });
      // A VM is never handed back as it is: it becomes cleanup pending, and is reset.
      const freed = await prisma.$executeRaw`
        UPDATE machines m LEFT JOIN reservations r ON r.id = m.reservation_id LEFT JOIN vms v ON v.machine_id = m.id
           SET m.status = IF(v.id IS NULL, 'available', 'offline'),
               m.reservation_id = IF(v.id IS NULL, NULL, m.reservation_id),
               m.status_reason = IF(v.id IS NULL, NULL, 'cleanup pending: the VM is reset before it is used again'),
               m.last_checked_at = IF(v.id IS NULL, m.last_checked_at, NULL)
         WHERE m.status = 'reserved' AND (r.id IS NULL OR r.status IN ('released', 'failed'))`;
      return { rolledBack, finished, freed };
    },

  };
}

export type ReservationsService = ReturnType<typeof createReservationsService>;
