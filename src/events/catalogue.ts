// Every domain event berth raises, by name, with what it carries. A subscriber (webhooks,
// the audit log, metrics) reads this file to know what there is; the module that owns a
// state raises its events, and never knows who listens.
//
// Payloads name their targets by id (and by name where people search by it), never carry a
// secret (no password, key, token or hash), and say what the change was, not the whole row.
import type { MachineStatus, ReservationStatus, VmState, ImageStatus } from '../generated/prisma/enums.js';

export interface DomainEvents {
  /**
   * A transition of the pool's state machine (machines/state.ts), named as there: the
   * status the machines went to, `deleted` when they are gone (deleteUnlessHeld,
   * deleteVmMachine), null when the transition leaves the status as it was (sudoGranted).
   */
  'machine.changed': { machineIds: string[]; transition: string; status: MachineStatus | 'deleted' | null; reservationId: string | null };
  /**
   * A machine record was made or edited by an admin (or an import); or by berth at its
   * first contact (`host_key_pinned`: the key it met, trusted from then on) and first login
   * (`updated`: the admin's password replaced by berth's own key). Deletion is a transition
   * (`machine.changed` to `deleted`).
   */
  'machine.edited': { machineId: string; name: string; change: 'created' | 'updated' | 'host_key_pinned' };
  /** A reservation moved between statuses (reservations/status.ts). */
  'reservation.changed': {
    reservationId: string;
    userId: string | null;
    from: ReservationStatus | null;
    to: ReservationStatus;
    /**
     * Why it ended (`released`, `expired`, `released_by_admin`, `user_deleted`, `cancelled`,
     * `cancelled_by_admin`, a failure) as its owner may read it; null otherwise. A queued
     * request whose wait ran out goes from `queued` to `released` with `expired`.
     */
    reason: string | null;
    /** For admins' eyes only: a failure as recorded, quoting the machine's own error; null when `reason` says it all. */
    adminDetail: string | null;
  };
  /** An active reservation now ends later. */
  'reservation.extended': { reservationId: string; userId: string | null; expiresAt: Date };
  /** An active reservation ends in `minutesLeft` minutes (each configured notice, once; notices.ts). */
  'reservation.expiring': { reservationId: string; userId: string | null; expiresAt: Date; minutesLeft: number };
  /** A VM's lifecycle: made, started, booted (SSH answers: it runs), stopped, reset, failed, deleted. */
  'vm.changed': { vmId: string; machineId: string | null; name: string; change: 'created' | 'started' | 'booted' | 'stopped' | 'reset' | 'failed' | 'deleted'; state: VmState | null };
  /** An image's build: started, ready, failed, deleted. */
  'image.changed': { imageId: string; name: string; status: ImageStatus | 'deleted'; sharesBaseWith: string | null };
  /** Identity: what a person did with their account, and what an admin did to it. */
  'user.registered': { userId: string; username: string };
  'user.created': { userId: string; username: string; role: 'user' | 'admin' };
  'user.login_succeeded': { userId: string; username: string; sessionId: string };
  /** `username` as typed (canonical), null when it cannot be a username (a password typed in the wrong field). */
  'user.login_failed': { username: string | null; reason: 'bad_credentials' | 'disabled' };
  'user.password_changed': { userId: string; by: 'self' | 'admin' };
  'user.updated': { userId: string; fields: string[] };
  'user.deleted': { userId: string };
  'session.revoked': { userId: string; sessionIds: string[] | 'all'; reason: string };
}

export type EventName = keyof DomainEvents;

/** One raised event: its name, when it was raised, and its payload. */
export type DomainEvent<K extends EventName = EventName> = {
  [P in K]: { type: P; at: Date } & DomainEvents[P];
}[K];
