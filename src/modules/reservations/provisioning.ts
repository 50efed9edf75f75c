// Making a reservation, all or nothing: claim the machines (allocation.ts), create the
// account on each in parallel over SSH while the reservation sits in `provisioning` under
// this process's lease, then either activate it or undo everything (unwind.ts) and say
// which machine failed.
import { randomBytes } from 'node:crypto';
import { encrypt } from 'unixcrypt';
import { AppError } from '../../errors/app-error.js';
import { DatabaseUnavailableError, isUniqueViolation, type Database } from '../../infra/database.js';
import type { Principal } from '../../shared/principal.js';
import type { MachineAccess, MachineRow } from '../machines/access.js';
import type { MachineState } from '../machines/state.js';
import { AccountError, RESERVED_ACCOUNT_NAMES, createAccount } from './accounts.js';
import type { Allocate } from './allocation.js';
import { failureReasonFor, setupFailure } from './failure-reasons.js';
import { replay, type RequestHasher } from './idempotency.js';
import { withMachines, type CreateReservationInput, type ReservationPolicy } from './model.js';
import { reservationById, type ReservationView } from './queries.js';
import type { ReservationStatusWriter } from './status.js';
import type { Unwinder } from './unwind.js';

export interface ProvisionerDeps {
  prisma: Database;
  access: MachineAccess;
  state: Pick<MachineState, 'sudoGranted'>;
  policy: Pick<ReservationPolicy, 'defaultMinutes' | 'maxMinutes'>;
  allocate: Allocate;
  status: Pick<ReservationStatusWriter, 'activate' | 'underLease'>;
  unwinder: Pick<Unwinder, 'unwind'>;
  requestHash: RequestHasher;
}

export interface Created {
  reservation: ReservationView;
  /** The password berth made up, shown once; undefined when the user gave theirs, or on a replay. */
  password: string | undefined;
  replayed: boolean;
}

/** 24 characters of base64url: 144 bits. */
function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * The password the accounts get, hashed here (SHA-512 crypt, which every libc's crypt(3)
 * reads), once for all the reservation's machines: a machine sees only the hash, whoever
 * chose the password. Root on a machine (a tenant who had sudo there) could otherwise catch
 * a password on its way to `chpasswd`, with a PAM module for one. A memory-hard hash adds
 * nothing to the 144 random bits of one berth made up, and the machine's own default
 * (yescrypt on Debian) would cost a VM under emulation ~0.6 s of a reservation (bench/vm).
 * For a password the user chose, SHA-512 crypt resists offline guessing less than yescrypt
 * would; guessing needs /etc/shadow, i.e. root on the machine, whom the clear password
 * reached before.
 */
function accountPasswordHash(password: string | undefined): string | undefined {
  return password === undefined ? undefined : encrypt(password, '$6');
}

/** What the actor may read of a failure: admins the machine's own words. */
const asViewer = (actor: Principal) => ({ admin: actor.role === 'admin' });

export function createProvisioner({ prisma, access, state, policy, allocate, status, unwinder, requestHash }: ProvisionerDeps) {
  const byKey = (userId: string, idempotencyKey: string) =>
    prisma.reservation.findUnique({ where: { userId_idempotencyKey: { userId, idempotencyKey } }, include: withMachines });

  /** Creates the account on one machine; a name already there fails with AccountError code 'exists'. */
  async function provision(machine: MachineRow, account: { username: string; reservationId: string; passwordHash?: string; sshPublicKey?: string }) {
    const ssh = await access.open(machine);
    try {
      if (machine.allowSudo) await state.sudoGranted(machine.id, account.reservationId);
      await createAccount(ssh, { ...account, grantSudo: machine.allowSudo });
    } finally {
      ssh.close();
    }
  }

  return async function create(actor: Principal, input: CreateReservationInput, idempotencyKey?: string): Promise<Created> {
    const duration = input.duration_minutes ?? policy.defaultMinutes;
    if (duration > policy.maxMinutes) {
      throw new AppError('exceeds_max_duration', `a reservation may last at most ${policy.maxMinutes} minutes`);
    }
    const account = input.username ?? actor.username;
    if (RESERVED_ACCOUNT_NAMES.has(account)) {
      throw new AppError('account_name_reserved', `"${account}" is a system name; choose another with "username"`);
    }
    if (idempotencyKey) {
      const existing = await byKey(actor.userId, idempotencyKey);
      if (existing) return replay(existing, input, requestHash, asViewer(actor));
    }
    const generated = input.password || input.ssh_public_key ? undefined : generatePassword();
    const passwordHash = accountPasswordHash(input.password ?? generated);

    let id: string, token: string, machines: MachineRow[];
    try {
      ({ id, token, machines } = await allocate(actor, { input, account, durationMinutes: duration, idempotencyKey }));
    } catch (err) {
      // The same key raced in from another request: answer as a replay of the winner.
      if (idempotencyKey && isUniqueViolation(err)) return replay((await byKey(actor.userId, idempotencyKey))!, input, requestHash, asViewer(actor));
      throw err;
    }

    const results = await status.underLease(id, token, () =>
      Promise.allSettled(machines.map((m) => provision(m, { username: account, reservationId: id, passwordHash, sshPublicKey: input.ssh_public_key }))),
    );
    const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [{ machine: machines[i]!, error: r.reason as Error }] : []));

    if (failures.length === 0) {
      // Only a password berth made up is shown (once); the user knows their own. The answer
      // is read after the work: a first contact pinned the machines' host keys.
      if (await status.activate({ id, userId: actor.userId }, token, duration)) {
        return { reservation: (await reservationById(prisma, id))!, password: generated, replayed: false };
      }
      const current = await prisma.reservation.findUnique({ where: { id }, select: { leaseOwner: true } });
      if (current?.leaseOwner !== token) {
        // The lease ran out, which means its renewals failed (the database was away): the
        // worker that took the reservation over rolls it back.
        throw new DatabaseUnavailableError('the database was unavailable while the reservation was set up; it is being rolled back');
      }
      failures.push({ machine: machines[0]!, error: new Error('the user was deleted while the reservation was being set up') });
    }

    const first = failures[0]!;
    const detail = setupFailure(first.machine.name, first.error.message);
    const existedBefore = new Set(failures.filter((f) => f.error instanceof AccountError && f.error.code === 'exists').map((f) => f.machine.id));
    await unwinder.unwind({ id, userId: actor.userId, status: 'provisioning', accountUsername: account }, 'failed', detail, token, existedBefore);
    throw new AppError('provisioning_failed', failureReasonFor(detail, asViewer(actor)), { machine: first.machine.name, reservation_id: id, failed_machines: failures.map((f) => f.machine.name) });
  };
}
