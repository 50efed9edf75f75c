// Who held which machine, over a whole test run, as the database committed it: a trigger
// records every machine a reservation claims (machines.reservation_id set to it — a booking's
// planned machines are not claimed until it starts) and every machine given back
// (machines.reservation_id leaving a reservation). Replayed in order, the
// record shows whether a machine was ever claimed while another reservation still held it,
// however briefly, and whichever process did it. (A rolled-back transaction leaves no record.)
import type { Connection } from 'mariadb';

const HISTORY = 'test_machine_history';

/** Starts recording on a migrated berth database (idempotent). */
export async function recordAllocations(conn: Connection): Promise<void> {
  await conn.query(`CREATE TABLE IF NOT EXISTS ${HISTORY} (
    seq BIGINT AUTO_INCREMENT PRIMARY KEY,
    machine_id CHAR(36) NOT NULL,
    reservation_id CHAR(36) NOT NULL,
    event ENUM('claimed', 'given back') NOT NULL,
    at DATETIME(6) NOT NULL DEFAULT NOW(6))`);
  await conn.query(`CREATE TRIGGER IF NOT EXISTS ${HISTORY}_changed AFTER UPDATE ON machines FOR EACH ROW
    IF NOT (NEW.reservation_id <=> OLD.reservation_id) THEN
      IF OLD.reservation_id IS NOT NULL THEN
        INSERT INTO ${HISTORY} (machine_id, reservation_id, event) VALUES (OLD.id, OLD.reservation_id, 'given back');
      END IF;
      IF NEW.reservation_id IS NOT NULL THEN
        INSERT INTO ${HISTORY} (machine_id, reservation_id, event) VALUES (NEW.id, NEW.reservation_id, 'claimed');
      END IF;
    END IF`);
}

export interface AllocationHistory {
  /** Every claim recorded. */
  claims: number;
  /** Machines claimed again after someone gave them back: the moments a double hand-out could happen. */
  reuses: number;
  /** Each claim of a machine another reservation still held, with both reservations. */
  overlaps: { machine: string; holder: string; claimedBy: string; at: Date }[];
}

/**
 * Replays the record. A claim comes after the give-back it depends on: a claim locks the
 * machine's row, which the give-back held until it committed, and the sequence numbers
 * follow.
 */
export async function readAllocationHistory(conn: Connection): Promise<AllocationHistory> {
  const rows: { machine: string; reservation_id: string; event: 'claimed' | 'given back'; at: Date }[] = await conn.query(
    `SELECT m.name AS machine, h.reservation_id, h.event, h.at FROM ${HISTORY} h JOIN machines m ON m.id = h.machine_id ORDER BY h.seq`,
  );
  const holders = new Map<string, string>();
  const history: AllocationHistory = { claims: 0, reuses: 0, overlaps: [] };
  const claimedBefore = new Set<string>();
  for (const row of rows) {
    const holder = holders.get(row.machine);
    if (row.event === 'claimed') {
      history.claims++;
      if (claimedBefore.has(row.machine)) history.reuses++;
      claimedBefore.add(row.machine);
      if (holder !== undefined && holder !== row.reservation_id) {
        history.overlaps.push({ machine: row.machine, holder, claimedBy: row.reservation_id, at: row.at });
      }
      holders.set(row.machine, row.reservation_id);
    } else if (holder === row.reservation_id) {
      holders.delete(row.machine);
    }
  }
  return history;
}
