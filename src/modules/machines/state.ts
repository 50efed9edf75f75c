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
import type { Machine, Prisma, PrismaClient } from '../../generated/prisma/client.js';
import type { RecordEvent } from '../../events/bus.js';

type Db = PrismaClient | Prisma.TransactionClient;

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

export function createMachineState(prisma: PrismaClient) {
  return {
    /** Allocation, inside its transaction: the locked machines become `reservationId`'s. Returns how many did. */
    async claim(tx: Prisma.TransactionClient, ids: string[], reservationId: string, _record?: RecordEvent): Promise<number> {
      const { count } = await tx.machine.updateMany({
        where: { id: { in: ids }, status: 'available' },
        data: { status: 'reserved', reservationId, statusReason: null },
      });
      return count;
    },

    /**
     * Provisioning, before an account with sudo is made on the machine `reservationId`
     * holds: from now on its release waits for a reprovision. Recorded before the account
     * exists, so that neither a crash nor a later change of `allow_sudo` can lose it.
     */
    async sudoGranted(id: string, reservationId: string): Promise<void> {
      await prisma.machine.updateMany({ where: { id, reservationId }, data: { sudoGranted: true } });
    },

    /** A clean release: the machine leaves `reservationId` and rejoins the pool (or waits for a reprovision). */
    async free(id: string, reservationId: string): Promise<void> {
      await prisma.machine.updateMany({ where: { id, reservationId, sudoGranted: true }, data: { ...TO_REPROVISION, reservationId: null } });
      await prisma.machine.updateMany({
        where: { id, reservationId },
        data: { status: 'available', reservationId: null, statusReason: null },
      });
    },

    /**
     * A release whose cleanup failed: the machine goes offline and keeps the link to the
     * ended reservation, the record of the account still to remove (the job retries it,
     * and so does an admin's check).
     */
    async markCleanupPending(id: string, reservationId: string, account: string, problem: string): Promise<void> {
      await prisma.machine.updateMany({
        where: { id, OR: [{ reservationId }, { reservationId: null }] },
        data: { status: 'offline', reservationId, lastCheckedAt: new Date(), statusReason: REASONS.cleanupPending(account, reservationId, problem) },
      });
    },

    /** The leftover of an ended reservation is gone: the machine rejoins the pool (or waits for a reprovision). */
    async cleanedUp(m: Pick<Machine, 'id' | 'reservationId'>): Promise<void> {
      await prisma.machine.updateMany({
        where: { id: m.id, status: 'offline', reservationId: m.reservationId, sudoGranted: true },
        data: { ...TO_REPROVISION, reservationId: null, lastCheckedAt: new Date() },
      });
      await prisma.machine.updateMany({
        where: { id: m.id, status: 'offline', reservationId: m.reservationId },
        data: { status: 'available', reservationId: null, statusReason: null, lastCheckedAt: new Date() },
      });
    },

    /** An offline machine whose reservation is still live is reachable again: it is that reservation's. */
    async backToReservation(m: Pick<Machine, 'id' | 'reservationId'>): Promise<void> {
      await prisma.machine.updateMany({
        where: { id: m.id, status: 'offline', reservationId: m.reservationId },
        data: { status: 'reserved', statusReason: null },
      });
    },

    /** SSH failed on a machine nobody holds: offline with the reason. One a reservation holds is its business. */
    async takeOfflineIfIdle(id: string, reason: string): Promise<void> {
      await prisma.machine.updateMany({ where: { id, status: 'available', reservationId: null }, data: { status: 'offline', statusReason: clip(reason) } });
    },

    /** When the machine was last tried: a pending cleanup is retried some minutes after. */
    async recordCheck(id: string): Promise<Machine> {
      return prisma.machine.update({ where: { id }, data: { lastCheckedAt: new Date() } });
    },

    /** The machine answered with another host key: offline whoever holds it, until an admin pins the new key. */
    async hostKeyChanged(id: string, reason: string): Promise<void> {
      await prisma.machine.update({ where: { id }, data: { status: 'offline', statusReason: clip(reason) } });
    },

    /** Maintenance for an idle machine; false when a reservation holds it (or its leftover). */
    async enterMaintenance(id: string, reason: string): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({ where: { id, ...IDLE }, data: { status: 'maintenance', statusReason: clip(reason) } });
      return count === 1;
    },

    /** Back from maintenance to the pool (or to needs_reprovision if it still does); false when it was not in maintenance. */
    async leaveMaintenance(id: string): Promise<boolean> {
      const marked = await prisma.machine.updateMany({ where: { id, status: 'maintenance', sudoGranted: true }, data: TO_REPROVISION });
      const { count } = await prisma.machine.updateMany({ where: { id, status: 'maintenance' }, data: { status: 'available', statusReason: null } });
      return marked.count + count === 1;
    },

    /** An admin (or the reprovision command) put the machine back to a known state: it rejoins the pool; false when it did not wait for that. */
    async reprovisioned(id: string): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({
        where: { id, status: 'needs_reprovision' },
        data: { status: 'available', statusReason: null, sudoGranted: false, lastCheckedAt: new Date() },
      });
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
      return count === 1;
    },

    /** berth stopped while the reprovision command ran: the machine waits for it again. */
    async reprovisionInterrupted(id: string): Promise<void> {
      await prisma.machine.updateMany({ where: { id, status: 'needs_reprovision', statusReason: REPROVISIONING }, data: { statusReason: AWAITING_REPROVISION } });
    },

    /** The reprovision command failed: the machine keeps waiting, with the reason; false when it no longer waited. */
    async reprovisionFailed(id: string, problem: string): Promise<boolean> {
      const { count } = await prisma.machine.updateMany({
        where: { id, status: 'needs_reprovision' },
        data: { statusReason: clip(`needs reprovision: the reprovision command failed: ${problem}`), lastCheckedAt: new Date() },
      });
      return count === 1;
    },

    /**
     * Deletes a machine unless it is reserved, or still linked to `reservationId` as read
     * (a claim in between makes this a no-op); false when it stayed.
     */
    async deleteUnlessHeld(m: Pick<Machine, 'id' | 'reservationId'>): Promise<boolean> {
      const { count } = await prisma.machine.deleteMany({ where: { id: m.id, status: { not: 'reserved' }, reservationId: m.reservationId } });
      return count === 1;
    },

    /** Whether the machine is a VM berth runs (its record changes and goes with the VM, through /v1/vms). */
    async isVm(id: string): Promise<boolean> {
      return (await prisma.vm.findUnique({ where: { machineId: id }, select: { id: true } })) !== null;
    },

    /** The machine of a VM being deleted, unless a reservation still links it; for a batch transaction. */
    deleteVmMachine(id: string) {
      return prisma.machine.deleteMany({ where: { id, reservationId: null } });
    },

    /** A VM leaves the pool (stopped, reset, deleted, booting); false when a reservation holds it. */
    async withdrawVm(id: string, reason: string, db: Db = prisma): Promise<boolean> {
      const { count } = await db.machine.updateMany({ where: { id, ...IDLE }, data: { status: 'offline', statusReason: reason } });
      return count === 1;
    },

    /** A VM that booted (or whose host is back) rejoins the pool, unless something else took its machine out meanwhile. */
    async returnVm(id: string): Promise<void> {
      await prisma.machine.updateMany({
        where: { id, status: 'offline', statusReason: { in: [REASONS.vmBooting, REASONS.vmHostDown] }, reservationId: null, vm: { is: { state: 'running' } } },
        data: { status: 'available', statusReason: null, lastCheckedAt: new Date() },
      });
    },

    /** The VMs' host stopped saying it is alive: its available VMs leave the pool (reserved ones keep their claim). */
    async vmHostDown(ids: string[]): Promise<number> {
      if (!ids.length) return 0;
      const { count } = await prisma.machine.updateMany({ where: { id: { in: ids }, status: 'available' }, data: { status: 'offline', statusReason: REASONS.vmHostDown } });
      return count;
    },

    /** The VM's QEMU died or its boot failed: out of the pool, reserved or not (its reservation keeps the claim). */
    async vmFailed(id: string, why: string): Promise<void> {
      await prisma.machine.update({ where: { id }, data: { status: 'offline', statusReason: REASONS.vmFailed(why) } });
    },

    /** A released VM is being reset: it leaves `reservationId` and waits for the clean boot. */
    async recycleVm(id: string, reservationId: string): Promise<void> {
      // The reset undoes whatever root did inside: no reprovision needed.
      await prisma.machine.updateMany({
        where: { id, reservationId },
        data: { status: 'offline', statusReason: REASONS.vmBooting, reservationId: null, sudoGranted: false },
      });
    },

    /**
     * Machines still `reserved` by a reservation that ended (or vanished), after a crash:
     * back to the pool (or to needs_reprovision when an account had sudo), except VMs,
     * which are never handed back as they are: they become cleanup pending and are reset.
     * Returns how many.
     */
    freeOrphans(): Promise<number> {
      return prisma.$executeRaw`
        UPDATE machines m LEFT JOIN reservations r ON r.id = m.reservation_id LEFT JOIN vms v ON v.machine_id = m.id
           SET m.status = IF(v.id IS NULL, IF(m.sudo_granted, ${TO_REPROVISION.status}, 'available'), 'offline'),
               m.reservation_id = IF(v.id IS NULL, NULL, m.reservation_id),
               m.status_reason = IF(v.id IS NULL, IF(m.sudo_granted, ${TO_REPROVISION.statusReason}, NULL), ${REASONS.vmToReset}),
               m.last_checked_at = IF(v.id IS NULL, m.last_checked_at, NULL)
         WHERE m.status = 'reserved' AND (r.id IS NULL OR r.status IN ('released', 'failed'))`;
    },
  };
}

export type MachineState = ReturnType<typeof createMachineState>;
