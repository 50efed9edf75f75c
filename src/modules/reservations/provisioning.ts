// Making a reservation: the request is decided in one transaction (allocation.ts): claimed
// now, queued, booked, or refused. Claimed now, the accounts are made at once (setup.ts)
// while the reservation sits in `provisioning` under this process's lease, and the answer
// says it is active, or which machine failed (everything undone). Queued or booked, the
// account's secrets are sealed in the reservation until the scheduler makes the accounts.
import { randomBytes } from 'node:crypto';
import { encrypt } from 'unixcrypt';
import { AppError } from '../../errors/app-error.js';
import { DatabaseUnavailableError, isUniqueViolation, type Database } from '../../infra/database.js';
import type { SecretBox } from '../../infra/secret-box.js';
import type { Principal } from '../../shared/principal.js';
import { RESERVED_ACCOUNT_NAMES } from './accounts.js';
import type { Allocate, Decision } from './allocation.js';
import { failureReasonFor } from './failure-reasons.js';
import { replay, type RequestHasher } from './idempotency.js';
import { withMachines, type CreateReservationInput, type ReservationPolicy } from './model.js';
import { reservationById, type ReservationView } from './queries.js';
import { sealAccount } from './sealed-account.js';
import type { AccountSetUp } from './setup.js';

export interface ProvisionerDeps {
  prisma: Database;
  secretBox: SecretBox;
  policy: Pick<ReservationPolicy, 'defaultMinutes' | 'maxMinutes' | 'bookingHorizonDays' | 'maxWaitMinutes'>;
  allocate: Allocate;
  setUp: AccountSetUp;
  requestHash: RequestHasher;
}

export interface Created {
  reservation: ReservationView;
  /** The password berth made up, shown once; undefined when the user gave theirs, on a replay, or until a queued or booked one is active. */
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

export function createProvisioner({ prisma, secretBox, policy, allocate, setUp, requestHash }: ProvisionerDeps) {
  const byKey = (userId: string, idempotencyKey: string) =>
    prisma.reservation.findUnique({ where: { userId_idempotencyKey: { userId, idempotencyKey } }, include: withMachines });

  /** The request's own bounds, before anything is read: duration, the wait, the booking's start. */
  function checkTimes(input: CreateReservationInput, duration: number) {
    if (duration > policy.maxMinutes) {
      throw new AppError('exceeds_max_duration', `a reservation may last at most ${policy.maxMinutes} minutes`);
    }
    if (input.wait_minutes !== undefined && input.wait_minutes > policy.maxWaitMinutes) {
      throw new AppError('exceeds_max_wait', `a request may wait at most ${policy.maxWaitMinutes} minutes`, { max_wait_minutes: policy.maxWaitMinutes });
    }
    if (input.start_at !== undefined) {
      const start = Date.parse(input.start_at);
      const latest = Date.now() + policy.bookingHorizonDays * 24 * 60 * 60_000;
      if (start <= Date.now()) throw new AppError('start_in_past', 'start_at must be in the future (leave it out to start now)');
      if (start > latest) {
        throw new AppError('beyond_booking_horizon', `a booking may start at most ${policy.bookingHorizonDays} days ahead`, { latest_start: new Date(latest).toISOString() });
      }
    }
  }

  return async function create(actor: Principal, input: CreateReservationInput, idempotencyKey?: string): Promise<Created> {
    const duration = input.duration_minutes ?? policy.defaultMinutes;
    checkTimes(input, duration);
    const account = input.username ?? actor.username;
    if (RESERVED_ACCOUNT_NAMES.has(account)) {
      throw new AppError('account_name_reserved', `"${account}" is a system name; choose another with "username"`);
    }
    if (idempotencyKey) {
      const existing = await byKey(actor.userId, idempotencyKey);
      if (existing) return replay(existing, input, requestHash, asViewer(actor));
    }
    const generated = input.password || input.ssh_public_key ? undefined : generatePassword();
    const secrets = { passwordHash: accountPasswordHash(input.password ?? generated), sshPublicKey: input.ssh_public_key };
    const mayWait = input.wait_minutes !== undefined || input.start_at !== undefined;

    let decision: Decision;
    try {
      decision = await allocate(actor, {
        input,
        account,
        durationMinutes: duration,
        idempotencyKey,
        ...(mayWait && { sealed: sealAccount(secretBox, secrets, generated) }),
      });
    } catch (err) {
      // The same key raced in from another request: answer as a replay of the winner.
      if (idempotencyKey && isUniqueViolation(err)) return replay((await byKey(actor.userId, idempotencyKey))!, input, requestHash, asViewer(actor));
      throw err;
    }
    if (decision.kind !== 'claimed') {
      // The password is shown on the owner's first read once the accounts are made.
      return { reservation: (await reservationById(prisma, decision.id))!, password: undefined, replayed: false };
    }

    const { id, token, machines } = decision;
    const done = await setUp({ id, userId: actor.userId, accountUsername: account }, machines, secrets, token);
    if (done.outcome === 'active') {
      // Only a password berth made up is shown (once); the user knows their own. The answer
      // is read after the work: a first contact pinned the machines' host keys.
      return { reservation: (await reservationById(prisma, id))!, password: generated, replayed: false };
    }
    if (done.outcome === 'lease_lost') {
      throw new DatabaseUnavailableError('the database was unavailable while the reservation was set up; it is being rolled back');
    }
    throw new AppError('provisioning_failed', failureReasonFor(done.detail, asViewer(actor)), { machine: done.machine, reservation_id: id, failed_machines: done.failedMachines });
  };
}
