// Idempotency-Key on POST /v1/reservations: the same key and body give the same outcome.
// Bodies are compared by a keyed HMAC of their canonical JSON, never stored in the clear
// (they may carry a password).
import { createHmac } from 'node:crypto';
import { AppError } from '../../errors/app-error.js';
import { failureReasonFor } from './failure-reasons.js';
import type { CreateReservationInput, ReservationRow } from './model.js';
import { reservationView } from './queries.js';

/** JSON with object keys sorted at every depth, so equal bodies give equal strings. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export type RequestHasher = (input: CreateReservationInput) => string;

export function createRequestHasher(key: Buffer): RequestHasher {
  return (input) => createHmac('sha256', key).update(canonicalJson(input)).digest('hex');
}

/** The answer to a repeated Idempotency-Key: the same outcome, or 422 for another body. */
export function replay(existing: ReservationRow, input: CreateReservationInput, requestHash: RequestHasher, viewer: { admin: boolean }) {
  if (existing.requestHash !== requestHash(input)) {
    throw new AppError('idempotency_key_reused', 'this Idempotency-Key was used with a different request');
  }
  if (existing.status === 'provisioning') {
    throw new AppError('request_in_progress', 'the request with this Idempotency-Key is still being processed; retry shortly');
  }
  if (existing.status === 'failed') {
    throw new AppError('provisioning_failed', failureReasonFor(existing.failureReason ?? 'the reservation failed', viewer), { reservation_id: existing.id });
  }
  return { reservation: reservationView(existing), password: undefined, replayed: true };
}
