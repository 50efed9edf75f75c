// How reservations read for people: what `reserve` prints when machines are ready, booked
// or queued, `reservations show`, and the `reservations` table.
import type { Reservation } from '../http/reservation.js';
import type { PublicKey } from '../ssh/public-key.js';
import { formatRemaining, formatTime, shortId } from './format.js';
import { formatFields, formatTable, type Cell } from './table.js';

export const machineNames = (r: Reservation) => r.machines.map((m) => m.name).join(',');

const machinesTable = (r: Reservation) =>
  formatTable(
    ['machine', 'host', 'port'],
    r.machines.map((m) => [m.name, m.host, m.port]),
  );

/** The estimate as a person reads it: when, or that the planner cannot tell yet. */
const estimate = (r: Reservation) => (r.estimated_start ? formatTime(r.estimated_start) : 'unknown');

/** The account, its generated password (berth shows one once), and the key sent, if any. */
function accountFields(r: Reservation, key: PublicKey | null): [string, Cell][] {
  return [
    ['account', r.account.username],
    ...(r.account.password ? ([['password', `${r.account.password}   (shown only now)`]] as [string, Cell][]) : []),
    ...(key ? ([['key', key.source]] as [string, Cell][]) : []),
  ];
}

/** An active reservation, as `reserve` prints it once the machines are ready. */
export function describeStarted(r: Reservation, key: PublicKey | null): string {
  return [
    `reservation ${r.id} ${r.status} until ${formatTime(r.expires_at)} (${formatRemaining(r.seconds_remaining)} left)`,
    formatFields(accountFields(r, key)),
    machinesTable(r),
    `log in: berth ssh ${shortId(r.id)}${r.machines.length > 1 ? ' [MACHINE]' : ''}    release: berth release ${shortId(r.id)}`,
  ].join('\n');
}

/** A booking: its window and the machines planned for it; `passwordGenerated` when berth makes the account's password. */
export function describeScheduled(r: Reservation, key: PublicKey | null, passwordGenerated: boolean): string {
  const end = r.start_at ? new Date(Date.parse(r.start_at) + r.duration_minutes * 60_000).toISOString() : null;
  // A generated password is sealed until the accounts are made: shown on the first read after the start.
  const passwordLater = passwordGenerated && !r.account.password;
  return [
    `reservation ${r.id} scheduled from ${formatTime(r.start_at)} to ${formatTime(end)}`,
    formatFields(accountFields(r, key)),
    machinesTable(r),
    ...(passwordLater ? [`the account's password is shown once, by \`berth reservations show ${shortId(r.id)}\`, after the start`] : []),
    `cancel: berth cancel ${shortId(r.id)}`,
  ].join('\n');
}

/** A request waiting in the queue: where it stands and when it gives up. */
export function describeQueued(r: Reservation): string {
  return [
    `queued: position ${r.queue_position ?? '?'}, estimated start ${estimate(r)}`,
    `reservation ${r.id} waits until ${formatTime(r.wait_until)} at the latest`,
    `watch: berth reservations    cancel: berth cancel ${shortId(r.id)}`,
  ].join('\n');
}

/** One reservation, every field a person may want (`reservations show`). */
export function describeReservation(r: Reservation): string {
  const fields: [string, Cell][] = [
    ['reservation', r.id],
    ['status', r.status],
    ['owner', r.owner],
    ...accountFields(r, null),
    ...(r.status === 'queued'
      ? ([
          ['queue position', r.queue_position],
          ['estimated start', estimate(r)],
          ['waits until', formatTime(r.wait_until)],
        ] as [string, Cell][])
      : []),
    ['starts', r.start_at ? formatTime(r.start_at) : null],
    ['expires', r.expires_at ? `${formatTime(r.expires_at)} (in ${formatRemaining(r.seconds_remaining)})` : null],
    ['latest possible end', formatTime(r.max_expires_at)],
    ['released', r.released_at ? `${formatTime(r.released_at)} (${r.release_reason ?? ''})` : null],
    ['failure', r.failure_reason],
  ];
  return r.machines.length ? `${formatFields(fields)}\n${machinesTable(r)}` : formatFields(fields);
}

/** The reservations table; the queue's and the bookings' columns only when some row has them. */
export function reservationsTable(items: Reservation[], withOwner: boolean): string {
  const waiting = items.some((r) => r.status === 'queued' || r.status === 'scheduled');
  return formatTable(
    ['id', ...(withOwner ? ['owner'] : []), 'status', 'machines', 'account', ...(waiting ? ['position', 'estimated_start', 'start_at'] : []), 'expires', 'left'],
    items.map((r) => [
      shortId(r.id),
      ...(withOwner ? [r.owner] : []),
      r.status,
      machineNames(r),
      r.account.username,
      ...(waiting ? [r.queue_position, r.status === 'queued' ? estimate(r) : null, r.start_at ? formatTime(r.start_at) : null] : []),
      formatTime(r.expires_at),
      r.status === 'active' ? formatRemaining(r.seconds_remaining) : '-',
    ]),
  );
}

/**
 * A generated password berth reveals once, on the first read after a queued or booked
 * reservation started, whichever command made that read: it must reach the person then.
 */
export function passwordNotice(r: Reservation): string | null {
  return r.account.password ? `password of ${r.account.username} on reservation ${shortId(r.id)}: ${r.account.password}   (shown only now)` : null;
}
