// The machine registry: credentials sealed at rest, maintenance, health checks, imports
// and pool statistics. Reservations claim and release machines through their own service.
import { isUniqueViolation } from '../../infra/database.js';
import { z } from 'zod';
import type { Database } from '../../infra/database.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { normalizeKeyLine, parseHostKey } from '../../infra/ssh.js';
import { AppError } from '../../errors/app-error.js';
import type { MachineAccess, MachineRow } from './access.js';
import type { EventBus } from '../../events/bus.js';
import type { MachineState } from './state.js';
import { createMachineBody } from './schemas.js';
import { pageOf } from '../../infra/paging.js';
import { whereAll } from '../../infra/sql-where.js';
import { isLive } from '../../shared/reservation-statuses.js';
import { POOL_COUNTS, bookingsOn, machinePageSql, machineView, tagFilter, type MachineView } from './queries.js';

type MachineInput = z.output<typeof createMachineBody>;
export interface MachinePatch {
  host?: string;
  port?: number;
  username?: string;
  password?: string;
  private_key?: string;
  keep_password?: boolean;
  host_key?: string | null;
  type?: string;
  tags?: Record<string, string>;
  allow_sudo?: boolean;
}

const notFound = (name: string) => new AppError('machine_not_found', `no machine named ${name}`);

/**
 * The columns a given host_key pins: its fingerprint, and the key line itself when one was
 * given (a bare fingerprint leaves the line to be learned on first contact); null forgets both.
 */
function pinnedHostKey(hostKey: string | null): { hostKeyFingerprint: string | null; hostKey: string | null } {
  if (!hostKey) return { hostKeyFingerprint: null, hostKey: null };
  const fingerprint = parseHostKey(hostKey);
  if (!fingerprint) throw new AppError('invalid_host_key', 'host_key must be an OpenSSH public key line or a SHA256:… fingerprint');
  return { hostKeyFingerprint: fingerprint, hostKey: normalizeKeyLine(hostKey) };
}

export function createMachinesService(deps: {
  prisma: Database;
  secretBox: SecretBox;
  access: MachineAccess;
  state: MachineState;
  /** Removes what an ended reservation left on an offline machine (reservations service). */
  cleanupMachine(machine: MachineRow): Promise<'clean' | 'live'>;
  events: Pick<EventBus, 'raise'>;
  log: { error(obj: object, msg: string): void };
}) {
  const { prisma, secretBox, access, state, cleanupMachine, events, log } = deps;
  const edited = (m: MachineRow, change: 'created' | 'updated') => events.raise('machine.edited', { machineId: m.id, name: m.name, change });

  /** A new credential, sealed. A password is replaced by berth's key on the first login unless kept. */
  function sealed(input: { password?: string; private_key?: string; keep_password?: boolean }) {
    if (input.password) return { credentialKind: 'password' as const, credential: secretBox.seal(input.password), keepPassword: input.keep_password ?? false };
    if (input.private_key) return { credentialKind: 'private_key' as const, credential: secretBox.seal(input.private_key), keepPassword: false };
    return {};
  }

  /** A VM's machine record is berth's own: it changes and goes with the VM (/v1/vms). */
  async function refuseVm(m: { id: string; name: string }): Promise<void> {
    if (await state.isVm(m.id)) {
      throw new AppError('machine_is_vm', `${m.name} is a VM berth runs; manage it through /v1/vms`);
    }
  }

  /**
   * Taking a machine away (maintenance, deletion) breaks the bookings planned on it: say
   * which, unless the admin forces it — the scheduler then re-plans them onto other matching
   * machines, or fails them with the reason.
   */
  async function refuseIfBooked(m: { id: string; name: string }, opts: { force?: boolean }): Promise<void> {
    if (opts.force) return;
    const bookings = await bookingsOn(prisma, m.id);
    if (bookings.length) {
      throw new AppError('machine_booked', `${m.name} is booked ahead (${bookings.length} booking(s)); repeat with ?force=true to re-plan or fail them`, {
        bookings: bookings.map((b) => ({ reservation_id: b.id, start_at: b.startAt, expires_at: b.expiresAt })),
      });
    }
  }

  async function byNameOrThrow(name: string): Promise<MachineRow> {
    const m = await prisma.machine.findUnique({ where: { name } });
    if (!m) throw notFound(name);
    return m;
  }

  /** Creates, or (for imports) updates the machine with the same name. */
  async function upsert(input: MachineInput, mode: 'create' | 'upsert'): Promise<{ machine: MachineRow; created: boolean }> {
    const data = {
      host: input.host,
      port: input.port,
      username: input.username,
      ...sealed(input),
      type: input.type,
      tags: input.tags,
      allowSudo: input.allow_sudo,
      ...(input.host_key !== undefined && pinnedHostKey(input.host_key)),
    };
    try {
      const machine = await prisma.machine.create({
        data: { name: input.name, ...data, credentialKind: data.credentialKind!, credential: data.credential! },
      });
      await edited(machine, 'created');
      return { machine, created: true };
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      if (mode === 'create') throw new AppError('machine_exists', `a machine named ${input.name} exists`);
      await refuseVm(await byNameOrThrow(input.name));
      const machine = await prisma.machine.update({ where: { name: input.name }, data });
      await edited(machine, 'updated');
      return { machine, created: false };
    }
  }

  return {
    async getOrThrow(name: string): Promise<MachineView> {
      return machineView(await byNameOrThrow(name));
    },

    create: (input: MachineInput) => upsert(input, 'create').then((r) => machineView(r.machine)),

    /** Each entry is validated on its own: good entries are saved, bad ones reported by index. */
    async import(entries: unknown[]) {
      const result = { created: 0, updated: 0, errors: [] as { index: number; name: string | null; pointer: string; code: string; message: string }[] };
      for (const [index, raw] of entries.entries()) {
        const entry = raw && typeof raw === 'object' ? { ...(raw as Record<string, unknown>) } : raw;
        // The machine-manager format calls the login user `user`.
        if (entry && typeof entry === 'object' && 'user' in entry && !('username' in entry)) {
          (entry as Record<string, unknown>).username = (entry as Record<string, unknown>).user;
          delete (entry as Record<string, unknown>).user;
        }
        const name = entry && typeof entry === 'object' && typeof (entry as { name?: unknown }).name === 'string' ? (entry as { name: string }).name : null;
        const parsed = createMachineBody.safeParse(entry);
        if (!parsed.success) {
          for (const issue of parsed.error.issues) {
            result.errors.push({
              index,
              name,
              pointer: `/machines/${index}/${issue.path.join('/')}`.replace(/\/$/, ''),
              code: 'validation_failed',
              message: issue.message,
            });
          }
          continue;
        }
        try {
          const { created } = await upsert(parsed.data, 'upsert');
          if (created) result.created++;
          else result.updated++;
        } catch (err) {
          // One entry's failure must not lose the others, nor leak internals to the client:
          // a refusal (AppError) is the client's to read; anything else is berth's, and logged.
          if (err instanceof AppError) {
            result.errors.push({ index, name, pointer: `/machines/${index}`, code: err.code, message: err.detail });
          } else {
            log.error({ err, index, name }, 'importing a machine failed');
            result.errors.push({ index, name, pointer: `/machines/${index}`, code: 'internal_error', message: 'could not be saved (an internal error, logged on the server)' });
          }
        }
      }
      return result;
    },

    /** One page in name order: one SELECT of the columns the answer shows. */
    async list(filter: { status?: MachineRow['status']; type?: string; tag: string[]; limit: number; cursor?: string }) {
      const where = whereAll([
        filter.status ? ['status = ?', filter.status] : null,
        filter.type ? ['type = ?', filter.type] : null,
        ...filter.tag.map(tagFilter),
        filter.cursor ? ['name > ?', filter.cursor] : null,
      ]);
      const rows = await prisma.$rows<MachineView>(machinePageSql(where.sql), [...where.values, filter.limit + 1]);
      return pageOf(rows, filter.limit, (m) => m.name);
    },

    async update(name: string, patch: MachinePatch): Promise<MachineView> {
      await refuseVm(await byNameOrThrow(name));
      const updated = await prisma.machine.update({
        where: { name },
        data: {
          ...(patch.host !== undefined && { host: patch.host }),
          ...(patch.port !== undefined && { port: patch.port }),
          ...(patch.username !== undefined && { username: patch.username }),
          ...sealed(patch),
          ...(patch.keep_password !== undefined && !patch.password && { keepPassword: patch.keep_password }),
          ...(patch.host_key !== undefined && pinnedHostKey(patch.host_key)),
          ...(patch.type !== undefined && { type: patch.type }),
          ...(patch.tags !== undefined && { tags: patch.tags }),
          ...(patch.allow_sudo !== undefined && { allowSudo: patch.allow_sudo }),
        },
      });
      await edited(updated, 'updated');
      return machineView(updated);
    },

    /** Deletes a machine no live reservation holds (an offline one with a cleanup pending may go). */
    async remove(name: string, opts: { force?: boolean } = {}): Promise<void> {
      const m = await byNameOrThrow(name);
      await refuseVm(m);
      const holder = m.reservationId
        ? await prisma.reservation.findUnique({ where: { id: m.reservationId }, select: { status: true } })
        : null;
      const live = holder && isLive(holder.status);
      if (!live) await refuseIfBooked(m, opts);
      // Conditional on what was read: a claim in between makes this a no-op, answered 409.
      if (live || !(await state.deleteUnlessHeld(m))) throw new AppError('machine_reserved', `${name} is reserved; release its reservation first`);
    },

    async enterMaintenance(name: string, reason: string, opts: { force?: boolean } = {}): Promise<MachineView> {
      const before = await byNameOrThrow(name);
      await refuseVm(before);
      await refuseIfBooked(before, opts);
      if (!(await state.enterMaintenance(before.id, reason))) {
        const m = await byNameOrThrow(name);
        throw new AppError(
          'machine_reserved',
          m.status === 'reserved'
            ? `${name} is reserved; it can enter maintenance once released`
            : `${name} still holds an account of an ended reservation; run a check to clean it first`,
        );
      }
      return machineView(await byNameOrThrow(name));
    },

    /** An admin says the machine was reprovisioned (reinstalled, or checked clean): it rejoins the pool. */
    async reprovisioned(name: string): Promise<MachineView> {
      const m = await byNameOrThrow(name);
      if (!(await state.reprovisioned(m.id))) {
        throw new AppError('not_awaiting_reprovision', `${name} is ${m.status}; only a machine in needs_reprovision can be cleared`);
      }
      return machineView(await byNameOrThrow(name));
    },

    async leaveMaintenance(name: string): Promise<MachineView> {
      const m = await byNameOrThrow(name);
      if (m.status !== 'maintenance' || !(await state.leaveMaintenance(m.id))) {
        throw new AppError('not_in_maintenance', `${name} is ${m.status}, not in maintenance`);
      }
      return machineView(await byNameOrThrow(name));
    },

    /**
     * SSH probe. A reachable offline machine comes back: to the pool once any account an
     * ended reservation left on it is removed, or to `reserved` if its reservation is
     * still live. A changed host key keeps it out until an admin pins the new one.
     */
    async check(name: string) {
      const m = await byNameOrThrow(name);
      await refuseVm(m);
      const started = performance.now();
      try {
        const session = await access.open(m);
        let r;
        try {
          r = await session.runScript('true', []);
        } finally {
          session.close();
        }
        const latency = Math.round(performance.now() - started);
        if (r.code !== 0) throw new Error(`a command failed on the machine (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}`);
        await state.recordCheck(m.id);
        if (m.status === 'offline' && (await cleanupMachine(m)) === 'live') await state.backToReservation(m);
        const after = await byNameOrThrow(name);
        return { reachable: true, latency_ms: latency, host_key_fingerprint: after.hostKeyFingerprint, status: after.status };
      } catch (err) {
        const message = (err as Error).message;
        // Only an idle machine is taken offline here; a claimed one is its reservation's business.
        await state.takeOfflineIfIdle(m.id, message);
        const after = await state.recordCheck(m.id);
        return { reachable: false, latency_ms: null, host_key_fingerprint: after.hostKeyFingerprint, status: after.status, error: message };
      }
    },

    async pool() {
      const groups = await prisma.$rows<{ status: MachineRow['status']; type: string; n: bigint }>(POOL_COUNTS);
      const empty = () => ({ total: 0, available: 0, reserved: 0, maintenance: 0, offline: 0, needs_reprovision: 0 });
      const total = empty();
      const byType: Record<string, ReturnType<typeof empty>> = {};
      for (const g of groups) {
        const n = Number(g.n);
        const t = (byType[g.type] ??= empty());
        t[g.status] += n;
        t.total += n;
        total[g.status] += n;
        total.total += n;
      }
      return { ...total, by_type: byType };
    },
  };
}

export type MachinesService = ReturnType<typeof createMachinesService>;
