// What the reservation files share: the policy, the request, the row as the service reads it.
import type { Prisma } from '../../generated/prisma/client.js';

export interface ReservationPolicy {
  defaultMinutes: number;
  maxMinutes: number;
  maxTotalMinutes: number;
  maxMachinesPerUser: number;
  leaseSeconds: number;
  /** How far ahead a booking may start. */
  bookingHorizonDays: number;
  /** The most a request may wait in the queue. */
  maxWaitMinutes: number;
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
  /** Wait up to this many minutes for machines instead of a 409 (a queued request). */
  wait_minutes?: number;
  /** Book for this start instead of now (a scheduled reservation). */
  start_at?: string;
}

/** What a request asks of machines, as a queued request or a booking keeps it (its `request` column). */
export interface MachineAsk {
  count?: number;
  machines?: string[];
  type?: string;
  tags?: Record<string, string>;
}

/** What a request asks of machines, as the planner matches it. */
export function machineRequestOf(input: CreateReservationInput): MachineAsk {
  return {
    ...(input.count !== undefined && { count: input.count }),
    ...(input.machines && { machines: input.machines }),
    ...(input.type !== undefined && { type: input.type }),
    ...(input.tags && { tags: input.tags }),
  };
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
