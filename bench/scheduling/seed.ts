// Bookings for bench/scheduling, written straight into berth's database with the mariadb
// driver: `scheduled` reservations as allocation leaves them (machine_count, the request,
// start_at and expires_at = start + duration), spread evenly over the given machines and
// over a span of time, never two on one machine at once. Nothing is made on the machines:
// a booking touches them only when it starts.
import { randomUUID } from 'node:crypto';
import type { Connection } from 'mariadb';

const MINUTE = 60_000;

/**
 * `count` bookings of `owner` on `machineIds`, round-robin, each machine's in consecutive
 * slots of [from, to): each starts somewhere in the first quarter of its slot and lasts
 * between a quarter and a half of it, so neighbours on one machine never meet.
 */
export async function seedBookings(
  db: Connection,
  owner: { id: string; username: string },
  machineIds: string[],
  opts: { count: number; from: number; to: number },
): Promise<void> {
  const slotsPerMachine = Math.ceil(opts.count / machineIds.length);
  const slotMs = (opts.to - opts.from) / slotsPerMachine;
  const reservations: unknown[][] = [];
  const holds: unknown[][] = [];
  for (let i = 0; i < opts.count; i++) {
    const machineId = machineIds[i % machineIds.length]!;
    const slot = Math.floor(i / machineIds.length);
    // Deterministic spread (no randomness: two runs seed the same shapes).
    const offset = ((i * 7919) % 1000) / 1000;
    const start = Math.floor((opts.from + slot * slotMs + offset * slotMs * 0.25) / 1000) * 1000;
    const durationMinutes = Math.max(1, Math.floor(((0.25 + offset * 0.25) * slotMs) / MINUTE));
    const end = start + durationMinutes * MINUTE;
    const id = randomUUID();
    reservations.push([
      id,
      owner.id,
      owner.username,
      owner.username,
      durationMinutes,
      JSON.stringify({ count: 1 }),
      new Date(start),
      new Date(end),
      new Date(end + 24 * 60 * MINUTE),
    ]);
    holds.push([id, machineId]);
  }
  await db.batch(
    `INSERT INTO reservations (id, user_id, owner_username, status, account_username, duration_minutes, machine_count, request,
                               start_at, expires_at, max_expires_at, created_at)
     VALUES (?, ?, ?, 'scheduled', ?, ?, 1, ?, ?, ?, ?, NOW(3))`,
    reservations,
  );
  await db.batch('INSERT INTO reservation_machines (reservation_id, machine_id) VALUES (?, ?)', holds);
}
