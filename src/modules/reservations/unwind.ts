// Ending a reservation, whichever way it ends (release, expiry, failed set-up, a crash
// cleaned up later): remove the account from every machine, give back the machines that
// are clean, take offline those that are not — keeping the link to the reservation as a
// record of what is left to remove — and record the final state. VMs are reset instead.
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { MachineAccess, MachineRow } from '../machines/access.js';
import type { MachineState } from '../machines/state.js';
import { removeAccount } from './accounts.js';
import type { ReservationLog } from './model.js';
import { isLive } from '../../shared/reservation-statuses.js';
import type { ReservationRef, ReservationStatusWriter } from './status.js';

export interface UnwinderDeps {
  prisma: PrismaClient;
  access: MachineAccess;
  state: Pick<MachineState, 'free' | 'markCleanupPending' | 'cleanedUp'>;
  status: Pick<ReservationStatusWriter, 'underLease' | 'finish'>;
  /** Resets `machine` when it is a VM (true); false for any other machine (vms service). */
  recycle(machine: MachineRow, reservationId: string): Promise<boolean>;
  log: Pick<ReservationLog, 'warn'>;
}

export function createUnwinder({ prisma, access, state, status, recycle, log }: UnwinderDeps) {
  /** Removes the reservation's account from `m`; a message when something of it may remain. */
  async function removeFrom(m: MachineRow, r: { id: string; accountUsername: string }, existedBefore: boolean): Promise<string | null> {
    const ssh = await access.open(m);
    try {
      const outcome = await removeAccount(ssh, { username: r.accountUsername, reservationId: r.id });
      return outcome === 'not-ours' && !existedBefore ? `the account ${r.accountUsername} no longer carries this reservation's ownership record` : null;
    } finally {
      ssh.close();
    }
  }

  return {
    /**
     * Ends a reservation, read in `status`, whose lease `token` this process holds.
     * `existedBefore` names machines where the account was there before berth (nothing of
     * berth's to remove). Its machines are read here, after the work that held them: a first
     * contact pins a host key, a first login replaces a password by berth's key.
     */
    async unwind(
      r: ReservationRef & { status: 'provisioning' | 'releasing'; accountUsername: string },
      final: 'released' | 'failed',
      reason: string,
      token: string,
      existedBefore: ReadonlySet<string> = new Set(),
    ): Promise<void> {
      const held = await prisma.machine.findMany({ where: { allocations: { some: { reservationId: r.id } } } });
      await status.underLease(r.id, token, () =>
        Promise.all(
          held.map(async (m) => {
            let problem: string | null;
            try {
              // A VM is reset instead: nothing of this reservation survives, whatever root did
              // inside; its machine rejoins the pool once the VM has booted clean.
              if (await recycle(m, r.id)) return;
              problem = await removeFrom(m, r, existedBefore.has(m.id));
            } catch (err) {
              problem = (err as Error).message;
            }
            if (problem === null) {
              await state.free(m.id, r.id);
            } else {
              log.warn({ machine: m.name, reservation: r.id, err: problem }, 'could not remove a reservation account');
              await state.markCleanupPending(m.id, r.id, r.accountUsername, problem);
            }
          }),
        ),
      );
      if (!(await status.finish(r, token, final, reason))) log.warn({ reservation: r.id }, 'lost the lease while ending a reservation; its new owner finishes it');
    },

    /**
     * For a machine taken offline with a pending-cleanup record: 'live' when its reservation
     * is still live (nothing to clean), else removes the leftover account and frees it.
     * Throws when the machine still cannot be cleaned.
     */
    async cleanupMachine(m: MachineRow): Promise<'clean' | 'live'> {
      if (m.reservationId) {
        const r = await prisma.reservation.findUnique({ where: { id: m.reservationId }, select: { id: true, status: true, accountUsername: true } });
        if (r && isLive(r.status)) return 'live';
        if (await recycle(m, m.reservationId)) return 'clean';
        const problem = r && (await removeFrom(m, r, false));
        if (problem) throw new Error(problem);
      }
      await state.cleanedUp(m);
      return 'clean';
    },
  };
}

export type Unwinder = ReturnType<typeof createUnwinder>;
