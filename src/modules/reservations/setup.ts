// Setting up a reservation's accounts: the reservation holds its machines, in `provisioning`
// under this process's lease; the account is made on each in parallel over SSH, then the
// reservation is activated, or everything is undone (unwind.ts) and the outcome says which
// machine failed. Used by a request answered at once (provisioning.ts) and by the scheduler
// for a queued request it promoted or a booking whose start has come (scheduler.ts).
import type { MachineAccess, MachineRow } from '../machines/access.js';
import type { MachineState } from '../machines/state.js';
import { AccountError, createAccount } from './accounts.js';
import { setupFailure } from './failure-reasons.js';
import type { ReservationRef, ReservationStatusWriter } from './status.js';
import type { Unwinder } from './unwind.js';
import type { Database } from '../../infra/database.js';

/** What the accounts get: the password only as a hash, the key as given. */
export interface AccountSecrets {
  passwordHash?: string;
  sshPublicKey?: string;
}

export type SetUpOutcome =
  | { outcome: 'active' }
  /** Its lease ran out meanwhile (renewals failed: the database was away); whoever took it over rolls it back. */
  | { outcome: 'lease_lost' }
  /** Undone: `detail` is the failure as recorded (the machine's own words), `machine` the first that failed. */
  | { outcome: 'failed'; detail: string; machine: string; failedMachines: string[] };

export function createAccountSetUp(deps: {
  prisma: Database;
  access: MachineAccess;
  state: Pick<MachineState, 'sudoGranted'>;
  status: Pick<ReservationStatusWriter, 'activate' | 'underLease'>;
  unwinder: Pick<Unwinder, 'unwind'>;
}) {
  const { prisma, access, state, status, unwinder } = deps;

  /** Creates the account on one machine; a name already there fails with AccountError code 'exists'. */
  async function provision(machine: MachineRow, account: { username: string; reservationId: string } & AccountSecrets) {
    const ssh = await access.open(machine);
    try {
      if (machine.allowSudo) await state.sudoGranted(machine.id, account.reservationId);
      await createAccount(ssh, { ...account, grantSudo: machine.allowSudo });
    } finally {
      ssh.close();
    }
  }

  return async function setUp(r: ReservationRef & { accountUsername: string }, machines: MachineRow[], secrets: AccountSecrets, token: string): Promise<SetUpOutcome> {
    const results = await status.underLease(r.id, token, () =>
      Promise.allSettled(machines.map((m) => provision(m, { username: r.accountUsername, reservationId: r.id, ...secrets }))),
    );
    const failures = results.flatMap((res, i) => (res.status === 'rejected' ? [{ machine: machines[i]!, error: res.reason as Error }] : []));

    if (failures.length === 0) {
      if (await status.activate(r, token)) return { outcome: 'active' };
      const current = await prisma.reservation.findUnique({ where: { id: r.id }, select: { leaseOwner: true } });
      if (current?.leaseOwner !== token) return { outcome: 'lease_lost' };
      failures.push({ machine: machines[0]!, error: new Error('the user was deleted while the reservation was being set up') });
    }

    const first = failures[0]!;
    const detail = setupFailure(first.machine.name, first.error.message);
    const existedBefore = new Set(failures.filter((f) => f.error instanceof AccountError && f.error.code === 'exists').map((f) => f.machine.id));
    await unwinder.unwind({ ...r, status: 'provisioning' }, 'failed', detail, token, existedBefore);
    return { outcome: 'failed', detail, machine: first.machine.name, failedMachines: failures.map((f) => f.machine.name) };
  };
}

export type AccountSetUp = ReturnType<typeof createAccountSetUp>;
