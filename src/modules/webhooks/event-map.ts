// What webhooks hear: a fixed list of event types, and which domain event (events/catalogue.ts)
// makes which of them. Reservation events go to the owner's webhooks and to admins'; a VM
// that failed and a machine gone offline concern the pool, and only admins may hear them.
import type { DomainEvent } from '../../events/bus.js';

export const WEBHOOK_EVENTS = [
  'reservation.queued',
  'reservation.scheduled',
  'reservation.activated',
  'reservation.expiring',
  'reservation.extended',
  'reservation.released',
  'reservation.expired',
  'reservation.failed',
  'vm.failed',
  'machine.offline',
] as const;

export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Events about the pool rather than someone's reservation: an admin's webhook only. */
export const ADMIN_EVENTS: readonly WebhookEvent[] = ['vm.failed', 'machine.offline'];

export type ReservationEvent = Extract<WebhookEvent, `reservation.${string}`>;

/** One thing webhooks hear of, with what its payload is made from. */
export type Occurrence =
  | {
      type: ReservationEvent;
      reservationId: string;
      /** The owner (null once deleted): their webhooks hear it, besides admins'. */
      userId: string | null;
      /** The status it went to (the event's own, not what it is by the time the payload is made). */
      status: string;
      /** Why it ended, as its owner may read it. */
      reason: string | null;
      /** A failure in the machine's own words: admins' webhooks only. */
      adminDetail: string | null;
      expiresAt: Date | null;
      minutesLeft: number | null;
    }
  | { type: 'vm.failed'; vmId: string; name: string; machineId: string | null }
  | { type: 'machine.offline'; machineId: string; reservationId: string | null; transition: string };

const reservation = (
  type: ReservationEvent,
  e: { reservationId: string; userId: string | null },
  extra: Partial<Pick<Extract<Occurrence, { reservationId: string; status: string }>, 'status' | 'reason' | 'adminDetail' | 'expiresAt' | 'minutesLeft'>> = {},
): Occurrence => ({
  type,
  reservationId: e.reservationId,
  userId: e.userId,
  status: 'active',
  reason: null,
  adminDetail: null,
  expiresAt: null,
  minutesLeft: null,
  ...extra,
});

/** The webhook events `event` makes (none for most). */
export function occurrencesOf(event: DomainEvent): Occurrence[] {
  switch (event.type) {
    case 'reservation.changed': {
      const ended = { status: event.to, reason: event.reason, adminDetail: event.adminDetail };
      if (event.from === null && event.to === 'queued') return [reservation('reservation.queued', event, ended)];
      if (event.from === null && event.to === 'scheduled') return [reservation('reservation.scheduled', event, ended)];
      if (event.to === 'active' && event.from !== 'active') return [reservation('reservation.activated', event, ended)];
      if (event.to === 'failed') return [reservation('reservation.failed', event, ended)];
      // On the change to released, not to releasing: the machines are back, the accounts gone.
      if (event.to === 'released') return [reservation(event.reason === 'expired' ? 'reservation.expired' : 'reservation.released', event, ended)];
      return [];
    }
    case 'reservation.extended':
      return [reservation('reservation.extended', event, { expiresAt: event.expiresAt })];
    case 'reservation.expiring':
      return [reservation('reservation.expiring', event, { expiresAt: event.expiresAt, minutesLeft: event.minutesLeft })];
    case 'vm.changed':
      return event.change === 'failed' ? [{ type: 'vm.failed', vmId: event.vmId, name: event.name, machineId: event.machineId }] : [];
    case 'machine.changed':
      return event.status === 'offline'
        ? event.machineIds.map((machineId) => ({ type: 'machine.offline' as const, machineId, reservationId: event.reservationId, transition: event.transition }))
        : [];
    default:
      return [];
  }
}
