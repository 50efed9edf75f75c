// The pool's state machine: the only code that writes a machine's status, its reason and
// its reservation link. Every change is a named transition and a conditional update, so
// it happens only from the state it names, whatever other requests and processes do
// meanwhile. The rule that carries the weight is written once, in IDLE: nothing takes a
// machine from under a live reservation, nor from one that still holds a leftover account.
//
//   available ──claim──▶ reserved ──free──▶ available
//                           └──markCleanupPending──▶ offline (linked) ──cleanedUp──▶ available
//                                                        └──backToReservation──▶ reserved
//   available|offline ──takeOfflineIfIdle / hostKeyChanged──▶ offline
//   idle ──enterMaintenance──▶ maintenance ──leaveMaintenance──▶ available
//   Sudo: reserved ──sudoGranted──▶ reserved (marked); a marked machine that would rejoin the
//        pool (free, cleanedUp, leaveMaintenance, freeOrphans) goes to needs_reprovision
//        instead ──reprovisioned──▶ available (unmarked). A VM's reset unmarks it. With a
//        reprovision command: needs_reprovision ──reprovisionStarted──▶ (running) ──reprovisioned
//        or reprovisionFailed (waits for an admin).
//   VMs: idle ──withdrawVm──▶ offline ──returnVm (VM running)──▶ available
//        available ──vmHostDown (its host's process is gone)──▶ offline ──returnVm──▶ available
//        reserved ──recycleVm──▶ offline "vm booting" (reset, then returnVm)
//
// Every transition that changed something raises `machine.changed` once it has committed
// (events/bus.ts): the machines it moved, the transition's name, the status they went to.
// One that runs inside another module's transaction (claim, withdrawVm for a pool resize,
// deleteVmMachine) takes that transaction's `record`, so that its event is raised only if
// the transaction commits. recordCheck (a timestamp) and the reads are not transitions.
import { Prisma, type Machine, type PrismaClient } from '../../generated/prisma/client.js';
import type { MachineStatus } from '../../generated/prisma/enums.js';
import type { DomainEvents, EventBus, InTransaction, RecordEvent } from '../../events/bus.js';
import { ENDED_STATUSES } from '../../shared/reservation-statuses.js';

/** No reservation holds it (live or ended with a leftover): it may be taken out of the pool. */
const IDLE = { status: { not: 'reserved' as const }, reservationId: null };

/**
 * Where a machine goes instead of `available` when a reservation's account had sudo on it
 * since it was last reprovisioned: root may have left anything behind (a PAM module that
 * records passwords, a key in root's authorized_keys, a changed sshd).
 */
export const AWAITING_REPROVISION = 'needs reprovision: a reservation account had sudo on it';
const TO_REPROVISION = { status: 'needs_reprovision' as const, statusReason: AWAITING_REPROVISION };
/** The reason while the configured reprovision command runs for the machine. */
export const REPROVISIONING = 'needs reprovision: the reprovision command is running';

/** The status_reason column's size. */
const REASON_MAX = 255;
const clip = (reason: string) => reason.slice(0, REASON_MAX);

/** The reasons berth writes, and the neutral word a user who is not an admin sees for each. */
export const REASONS = {
  vmBooting: 'vm booting',
  vmStopped: 'vm stopped',
  vmBeingDeleted: 'vm being deleted',
  vmHostDown: 'vm host down',
  vmFailed: (why: string) => clip(`vm failed: ${why}`),
  vmToReset: 'cleanup pending: the VM is reset before it is used again',
  cleanupPending: (account: string, reservationId: string, problem: string) =>
    clip(`cleanup pending: account ${account} of reservation ${reservationId}: ${problem}`),
};

/**
 * What a user who is not an admin may read of why a machine is out of the pool: a
 * neutral word. The full reason can name another user's account and reservation, or
 * quote a machine's error output.
 */
export function neutralReason(m: Pick<Machine, 'status' | 'statusReason'>): string | null {
  const reason = m.statusReason;
  if (m.status === 'available' || m.status === 'reserved' || !reason) return null;
  if (m.status === 'maintenance') return 'maintenance';
  if (m.status === 'needs_reprovision') return 'needs reprovision';
  if ([REASONS.vmBooting, REASONS.vmStopped, REASONS.vmBeingDeleted, REASONS.vmHostDown].includes(reason)) return reason;
  if (reason.startsWith('cleanup pending')) return 'cleanup pending';
  if (reason.startsWith('vm failed')) return 'vm failed';
  return 'unreachable';
}

/** Machines still `reserved` by a reservation that ended (or vanished), after a crash; `m` machines, `r` reservations, `v` VMs. */
const ORPHANS_FROM = Prisma.sql`machines m LEFT JOIN reservations r ON r.id = m.reservation_id LEFT JOIN vms v ON v.machine_id = m.id`;
const ORPHANED = Prisma.sql`m.status = 'reserved' AND (r.id IS NULL OR r.status IN (${Prisma.join(ENDED_STATUSES)}))`;

/** Where a transition took machines, as `machine.changed` says it (events/catalogue.ts). */
type ChangedTo = DomainEvents['machine.changed']['status'];

export function createMachineState(prisma: PrismaClient, events: Pick<EventBus, 'raise'>) {
  /** Raises `transition`'s event for the machines it changed (none: nothing to say). */
  async function changed(transition: string, machineIds: string[], status: ChangedTo, reservationId: string | null): Promise<void> {
    if (machineIds.length) await events.raise('machine.changed', { machineIds, transition, status, reservationId });
  }

  /** For a transition of one machine: raises its event when its update changed it. */
  const changedIf = (count: number, transition: string, id: string, status: ChangedTo, reservationId: string | null) =>
    changed(transition, count > 0 ? [id] : [], status, reservationId);

  /**
   * For a transition of one idle machine that may run in a caller's transaction: recorded
   * there (raised if it commits), else raised now.
   */
  async function announce(within: InTransaction | undefined, count: number, transition: string, id: string, status: ChangedTo): Promise<void> {
    if (!within) return changedIf(count, transition, id, status, null);
    if (count > 0) within.record('machine.changed', { machineIds: [id], transition, status, reservationId: null });
  }

  /**
   * A release's end for a machine (free, cleanedUp): with a reprovision due when an account
   * had sudo on it, else back to the pool. At most one of the two updates matches; returns
   * the status the machine went to, or null when neither did.
   */
  async function rejoinPool(where: Prisma.MachineWhereInput, extra: Prisma.MachineUpdateManyMutationInput): Promise<MachineStatus | null> {
    const marked = await prisma.machine.updateMany({ where: { ...where, sudoGranted: true }, data: { ...TO_REPROVISION, reservationId: null, ...extra } });
    if (marked.count) return TO_REPROVISION.status;
    const { count } = await prisma.machine.updateMany({ where, data: { status: 'available', reservationId: null, statusReason: null, ...extra } });
    return count ? 'available' : null;
  }

  return {
    /**
     * Allocation, inside its transaction (`record` is its afterCommit's): the locked
     * machines become `reservationId`'s. Returns how many did.
     */
    async claim(tx: Prisma.TransactionClient, ids: string[], reservationId: string, record: RecordEvent): Promise<number> {
      const { count } = await tx.machine.updateMany({
        where: { id: { in: ids }, status: 'available' },
        data: { status: 'reserved', reservationId, statusReason: null },
      });
      if (count > 0) {
        // Fewer than asked (allocation then rolls back): which ones is read back, in the transaction.
        const claimed = count === ids.length ? ids : (await tx.machine.findMany({ where: { id: { in: ids }, reservationId }, select: { id: true } })).map((m) => m.id);
        record('machine.changed', { machineIds: claimed, transition: 'claim', status: 'reserved', reservationId });
      }
      return count;
    },

    /**
     * Provisioning, before an account with sudo is made on the machine `reservationId`
     * holds: from now on its release waits for a reprovision. Recorded before the account
     * exists, so that neither a crash nor a later change of `allow_sudo` can lose it.
     */
    async sudoGranted(id: string, reservationId: string): Promise<void> {
      const { count } = await prisma.machine.updateMany({ where: { id, reservationId }, data: { sudoGranted: true } });
      // Its status stays what it was (reserved while provisioning, offline if its VM failed meanwhile).
      await changedIf(count, 'sudoGranted', id, null, reservationId);
    },

    /** A clean release: the machine leaves `reservationId` and rejoins the pool (or waits for a reprovision). */
    async free(id: string, reservationId: string): Promise<void> {
      const status = await rejoinPool({ id, reservationId }, {});
      if (status) await changed('free', [id], status, reservationId);
    },

    /**
     * A release whose cleanup failed: the machine goes offline and keeps the link to the
     * ended reservation, the record of the account still to remove (the job retries it,
     * and so does an admin's check).
     */
    async markCleanupPending(id: string, reservationId: string, account: string, problem: string): Promise<void> {
      const { count } = await prisma.machine.updateMany({
        where: { id, OR: [{ reservationId }, { reservationId: null }] },
        data: { status: 'offline', reservationId, lastCheckedAt: new Date(), statusReason: REASONS.cleanupPending(account, reservationId, problem) },
      });
      await changedIf(count, 'markCleanupPending', id, 'offline', reservationId);
    },

    /** The leftover of an ended reservation is gone: the machine rejoins the pool (or waits for a reprovision). */
    async cleanedUp(m: Pick<Machine, 'id' | 'reservationId'>): Promise<void> {
      const status = await rejoinPool({ id: m.id, status: 'offline', reservationId: m.reservationId }, { lastCheckedAt: new Date() });
      if (status) await changed('cleanedUp', [m.id], status, m.reservationId);
    },

    /** An offline machine whose reservation is still live is reachable again: it is that reservation's. */
    async backToReservation(m: Pick<Machine, 'id' | 'reservationId'>): Promise<void> {
      const { count } = await prisma.machine.updateMany({
        where: { id: m.id, status: 'offline', reservationId: m.reservationId },
        data: { status: 'reserved', statusReason: null },
      });
      await changedIf(count, 'backToReservation', m.id, 'reserved', m.reservationId);
    },

    /** SSH failed on a machine nobody holds: offline with the reason. One a reservation holds is its business. */
    async takeOfflineIfIdle(id: string, reason: string): Promise<void> {
      const { count } = await prisma.machine.updateMany({ where: { id, status: 'available', reservationId: null }, data: { status: 'offline', statusReason: clip(reason) } });
      await changedIf(count, 'takeOfflineIfIdle', id, 'offline', null);
    },

    /** When the machine was last tried: a pending cleanup is retried some minutes after. */
    async recordCheck(id: string): Promise<Machine> {
      return prisma.machine.update({ where: { id }, data: { lastCheckedAt: new Date() } });
    },

    /** The machine answered with another host key: offline whoever holds it, until an admin pins the new key. */
    async hostKeyChanged(id: string, reason: string): Promise<void> {
      const m = await prisma.machine.update({ where: { id }, data: { status: 'offline', statusReason: clip(reason) } });
      await changed('hostKeyChanged', [id], 'offline', m.reservationId);
    },

    /** Maintenance for an idle machine; false when a reservation holds it (or its leftover). */
    async enterMaintenance(id: string, reason: string): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({ where: { id, ...IDLE }, data: { status: 'maintenance', statusReason: clip(reason) } });
      await changedIf(count, 'enterMaintenance', id, 'maintenance', null);
      return count === 1;
    },

    /** Back from maintenance to the pool (or to needs_reprovision if it still does); false when it was not in maintenance. */
    async leaveMaintenance(id: string): Promise<boolean> {
      const marked = await prisma.machine.updateMany({ where: { id, status: 'maintenance', sudoGranted: true }, data: TO_REPROVISION });
      const { count } = await prisma.machine.updateMany({ where: { id, status: 'maintenance' }, data: { status: 'available', statusReason: null } });
      await changedIf(marked.count + count, 'leaveMaintenance', id, marked.count ? TO_REPROVISION.status : 'available', null);
      return marked.count + count === 1;
    },

    /** An admin (or the reprovision command) put the machine back to a known state: it rejoins the pool; false when it did not wait for that. */
    async reprovisioned(id: string): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({
        where: { id, status: 'needs_reprovision' },
        data: { status: 'available', statusReason: null, sudoGranted: false, lastCheckedAt: new Date() },
      });
      await changedIf(count, 'reprovisioned', id, 'available', null);
      return count === 1;
    },

    /**
     * The reprovision command is about to run for a machine read as `m`: conditional on that
     * read, so that one process runs it; false when another took it (or an admin cleared it).
     */
    async reprovisionStarted(m: Pick<Machine, 'id' | 'statusReason' | 'lastCheckedAt'>): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({
        where: { id: m.id, status: 'needs_reprovision', statusReason: m.statusReason, lastCheckedAt: m.lastCheckedAt },
        data: { statusReason: REPROVISIONING, lastCheckedAt: new Date() },
      });
      await changedIf(count, 'reprovisionStarted', m.id, 'needs_reprovision', null);
      return count === 1;
    },

    /** berth stopped while the reprovision command ran: the machine waits for it again. */
    async reprovisionInterrupted(id: string): Promise<void> {
      const { count } = await prisma.machine.updateMany({ where: { id, status: 'needs_reprovision', statusReason: REPROVISIONING }, data: { statusReason: AWAITING_REPROVISION } });
      await changedIf(count, 'reprovisionInterrupted', id, 'needs_reprovision', null);
    },

    /** The reprovision command failed: the machine keeps waiting, with the reason; false when it no longer waited. */
    async reprovisionFailed(id: string, problem: string): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({
        where: { id, status: 'needs_reprovision' },
        data: { statusReason: clip(`needs reprovision: the reprovision command failed: ${problem}`), lastCheckedAt: new Date() },
      });
      await changedIf(count, 'reprovisionFailed', id, 'needs_reprovision', null);
      return count === 1;
    },

    /**
     * Deletes a machine unless it is reserved, or still linked to `reservationId` as read
     * (a claim in between makes this a no-op); false when it stayed. Its event has no status:
     * the machine is gone.
     */
    async deleteUnlessHeld(m: Pick<Machine, 'id' | 'reservationId'>): Promise<boolean> {
      const { count } = await prisma.machine.deleteMany({ where: { id: m.id, status: { not: 'reserved' }, reservationId: m.reservationId } });
      await changedIf(count, 'deleteUnlessHeld', m.id, 'deleted', null);
      return count === 1;
    },

    /** Whether the machine is a VM berth runs (its record changes and goes with the VM, through /v1/vms). */
    async isVm(id: string): Promise<boolean> {
      return (await prisma.vm.findUnique({ where: { machineId: id }, select: { id: true } })) !== null;
    },

    /** The machine of a VM being deleted (with its row, in `within`), unless a reservation still links it. */
    async deleteVmMachine(id: string, within?: InTransaction): Promise<{ count: number }> {
      const { count } = await (within?.tx ?? prisma).machine.deleteMany({ where: { id, reservationId: null } });
      await announce(within, count, 'deleteVmMachine', id, 'deleted');
      return { count };
    },

    /**
     * A VM leaves the pool (stopped, reset, deleted, booting); false when a reservation holds
     * it. In the caller's transaction when `within` is given (a pool resize).
     */
    async withdrawVm(id: string, reason: string, within?: InTransaction): Promise<boolean> {
      const { count } = await (within?.tx ?? prisma).machine.updateMany({ where: { id, ...IDLE }, data: { status: 'offline', statusReason: reason } });
      await announce(within, count, 'withdrawVm', id, 'offline');
      return count === 1;
    },

    /** A VM that booted (or whose host is back) rejoins the pool, unless something else took its machine out meanwhile. */
    async returnVm(id: string): Promise<void> {
      const { count } = await prisma.machine.updateMany({
        where: { id, status: 'offline', statusReason: { in: [REASONS.vmBooting, REASONS.vmHostDown] }, reservationId: null, vm: { is: { state: 'running' } } },
        data: { status: 'available', statusReason: null, lastCheckedAt: new Date() },
      });
      await changedIf(count, 'returnVm', id, 'available', null);
    },

    /**
     * The VMs' host stopped saying it is alive: its available VMs leave the pool (reserved
     * ones keep their claim). One update each, so that the event names exactly the ones that
     * left: they are few (a host's VMs), and only when a host goes down.
     */
    async vmHostDown(ids: string[]): Promise<number> {
      const left: string[] = [];
      for (const id of ids) {
        const { count } = await prisma.machine.updateMany({ where: { id, status: 'available' }, data: { status: 'offline', statusReason: REASONS.vmHostDown } });
        if (count > 0) left.push(id);
      }
      await changed('vmHostDown', left, 'offline', null);
      return left.length;
    },

    /** The VM's QEMU died or its boot failed: out of the pool, reserved or not (its reservation keeps the claim). */
    async vmFailed(id: string, why: string): Promise<void> {
      const m = await prisma.machine.update({ where: { id }, data: { status: 'offline', statusReason: REASONS.vmFailed(why) } });
      await changed('vmFailed', [id], 'offline', m.reservationId);
    },

    /** A released VM is being reset: it leaves `reservationId` and waits for the clean boot. */
    async recycleVm(id: string, reservationId: string): Promise<void> {
      // The reset undoes whatever root did inside: no reprovision needed.
      const { count } = await prisma.machine.updateMany({
        where: { id, reservationId },
        data: { status: 'offline', statusReason: REASONS.vmBooting, reservationId: null, sudoGranted: false },
      });
      await changedIf(count, 'recycleVm', id, 'offline', reservationId);
    },

    /**
     * Machines still `reserved` by a reservation that ended (or vanished), after a crash:
     * back to the pool (or to needs_reprovision when an account had sudo), except VMs,
     * which are never handed back as they are: they become cleanup pending and are reset.
     * Returns how many.
     *
     * One read finds them (usually none: the whole cost then), then each is updated under the
     * same conditions, so that a machine another process freed meanwhile is neither counted
     * nor announced twice. Where each goes is known from the read: a machine does not become
     * a VM, and sudo is granted only under a live reservation, which an orphan's is not.
     */
    async freeOrphans(): Promise<number> {
      const orphans = await prisma.$queryRaw<{ id: string; reservation_id: string | null; is_vm: number | bigint; sudo_granted: number | bigint | boolean }[]>`
        SELECT m.id, m.reservation_id, v.id IS NOT NULL AS is_vm, m.sudo_granted FROM ${ORPHANS_FROM} WHERE ${ORPHANED}`;
      let freed = 0;
      for (const orphan of orphans) {
        const count = await prisma.$executeRaw`
          UPDATE ${ORPHANS_FROM}
             SET m.status = IF(v.id IS NULL, IF(m.sudo_granted, ${TO_REPROVISION.status}, 'available'), 'offline'),
                 m.reservation_id = IF(v.id IS NULL, NULL, m.reservation_id),
                 m.status_reason = IF(v.id IS NULL, IF(m.sudo_granted, ${TO_REPROVISION.statusReason}, NULL), ${REASONS.vmToReset}),
                 m.last_checked_at = IF(v.id IS NULL, m.last_checked_at, NULL)
           WHERE m.id = ${orphan.id} AND ${ORPHANED}`;
        if (count === 0) continue;
        freed++;
        const status = Number(orphan.is_vm) ? 'offline' : Number(orphan.sudo_granted) ? TO_REPROVISION.status : 'available';
        await changed('freeOrphans', [orphan.id], status, orphan.reservation_id);
      }
      return freed;
    },
  };
}

export type MachineState = ReturnType<typeof createMachineState>;
