// A reservation as berth answers it, with the fields scheduling added: queued requests
// (`wait_minutes`, answered 202) and bookings (`start_at`). They are spelled out here, on top
// of the generated client's types, because the generated client follows the OpenAPI
// document of the server it was made from, and commands must keep working with both a
// document that has them and one that does not yet. Once the regenerated client carries
// them, these additions are the same types said twice, never different ones.
import type { components, operations } from '@berth/client';

export const RESERVATION_STATUSES = ['queued', 'scheduled', 'provisioning', 'active', 'releasing', 'released', 'failed'] as const;
export type ReservationStatus = (typeof RESERVATION_STATUSES)[number];

/** Still to come or still running: what `berth reservations` shows by default. */
export const CURRENT_STATUSES = ['queued', 'scheduled', 'provisioning', 'active'] as const satisfies readonly ReservationStatus[];

export type Reservation = Omit<components['schemas']['Reservation'], 'status'> & {
  status: ReservationStatus;
  /** A booking's start (set for scheduled, kept once active). */
  start_at?: string | null;
  /** When a queued request gives up. */
  wait_until?: string | null;
  /** 1 = next in line (queued only). */
  queue_position?: number | null;
  /** The planner's estimate of the start (queued only; null: it cannot tell). */
  estimated_start?: string | null;
};

export type ReservationRequest = operations['createReservation']['requestBody']['content']['application/json'] & {
  /** If it cannot start now, wait in the queue this long (answered 202, status queued). */
  wait_minutes?: number;
  /** A booking ahead of time: RFC 3339, in the future (answered 201, status scheduled). */
  start_at?: string;
};

type ListQuery = NonNullable<operations['listReservations']['parameters']['query']>;

/** A status as the list filter takes it (the generated type may predate `queued` and `scheduled`). */
export const statusFilter = (status: ReservationStatus) => status as ListQuery['status'];

/** The problem of a 409 `insufficient_capacity`: when the request could start, from the pool's plan. */
export const earliestStart = (problem: unknown): string | null => {
  const value = (problem as { earliest_start?: unknown } | null)?.earliest_start;
  return typeof value === 'string' ? value : null;
};
