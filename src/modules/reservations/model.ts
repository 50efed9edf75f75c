// What the reservation files share: the policy, the request, the row as the service reads it.
import type { Prisma } from '../../generated/prisma/client.js';

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

/** Reservations ended at once per process: each holds one SSH session per machine. */
export const UNWIND_CONCURRENCY = 8;

/** The log a reservation file writes to. */
export interface ReservationLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}
