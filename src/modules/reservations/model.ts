// What the reservation files share: the policy, the request, the row as the service reads it.
import type { Machine, Prisma } from '../../generated/prisma/client.js';
import type { Timestamp } from '../../shared/timestamps.js';

export interface ReservationPolicy {
  defaultMinutes: number;
  maxMinutes: number;
  maxTotalMinutes: number;
  maxMachinesPerUser: number;
  leaseSeconds: number;
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

export const withMachines = { machines: { include: { machine: true } } } as const;
export type ReservationRow = Prisma.ReservationGetPayload<{ include: typeof withMachines }>;

type ReservationTimes = 'createdAt' | 'activatedAt' | 'expiresAt' | 'maxExpiresAt' | 'releasedAt';
/**
 * A reservation as the API shows it: a ReservationRow, or what the list reads (times as ISO
 * 8601 strings, and of each machine only what the answer shows).
 */
export type ReservationView = Omit<ReservationRow, ReservationTimes | 'machines' | 'leaseOwner' | 'leaseUntil' | 'idempotencyKey' | 'requestHash'> & {
  [K in ReservationTimes]: null extends ReservationRow[K] ? Timestamp | null : Timestamp;
} & { machines: { machine: Pick<Machine, 'name' | 'host' | 'port' | 'hostKey'> }[] };

/** The states in which a reservation holds its machines. */
export const LIVE_STATUSES = ['provisioning', 'active', 'releasing'] as const;
export const isLive = (status: string) => (LIVE_STATUSES as readonly string[]).includes(status);

/** Reservations ended at once per process: each holds one SSH session per machine. */
export const UNWIND_CONCURRENCY = 8;

/** The log a reservation file writes to. */
export interface ReservationLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}
