// Notices of a coming end: BERTH_NOTICE_MINUTES before an active reservation ends (10 and
// 2 by default), berth writes one line to the terminals of the account's logged-in
// sessions on each of its machines, and raises `reservation.expiring` for webhooks.
//
// Each notice is sent once, whatever the number of berth processes: a process claims it by
// inserting its row in reservation_notices, whose primary key (reservation, minutes) lets
// one insert win; the others' hit the duplicate key and send nothing. No lock is held
// while machines are written to, and a claimed notice counts as sent whatever the machines
// answered: a machine that is down hears nothing rather than a storm of retries.
//
// A notice belongs to the end it announced. Its row keeps when it was sent; a reservation
// extended since then ends later than that notice said, so its row no longer covers the
// new end (sent before `end - minutes`), and the notice is claimed again, by the same
// conditional update in every process, for the new end.
//
// The windows of the notices are bands of time left: with notices at 10 and 2 minutes, a
// reservation with 2 minutes or less left is due the 2-minute notice, one with more than 2
// and up to 10 the 10-minute notice. A reservation the job comes to late (berth was down)
// gets only the notice of its band, and the larger ones are marked sent with it: one line,
// the one that says the truth about the time left.
import type { EventBus } from '../../events/bus.js';
import { isUniqueViolation, type Database } from '../../infra/database.js';
import { sqlTime } from '../../infra/sql-where.js';
import { mapLimit } from '../../shared/map-limit.js';
import { withTimeout } from '../../shared/time-limit.js';
import type { MachineAccess, MachineRow } from '../machines/access.js';
import type { ReservationLog } from './model.js';
import { writeToTerminals } from './terminals.js';

/** The most reservations one band reads per tick: the next tick takes the rest. */
const BATCH = 200;
/** Reservations notified at once (each writes to all its machines at once). */
const CONCURRENCY = 8;
/** How long one machine may take to hear a notice: connect, find the terminals, write; a late notice is worth little. */
export const MACHINE_NOTICE_TIMEOUT_MS = 15_000;

/** The notice a reservation with at most `minutes` (and more than `after`) left is due; `larger` are marked sent with it. */
export interface NoticeBand {
  minutes: number;
  after: number;
  larger: number[];
}

/** The bands of time left that configured notices (any order) make, smallest first. */
export function noticeBands(noticeMinutes: readonly number[]): NoticeBand[] {
  const ascending = [...new Set(noticeMinutes)].filter((m) => m > 0).sort((a, b) => a - b);
  return ascending.map((minutes, i) => ({ minutes, after: i === 0 ? 0 : ascending[i - 1]!, larger: ascending.slice(i + 1) }));
}

/** The line a terminal shows: when the reservation ends (HH:MM UTC) and the command that extends it. */
export function noticeLine(reservationId: string, expiresAt: Date): string {
  return `berth: this reservation ends at ${expiresAt.toISOString().slice(11, 16)} UTC — berth extend ${reservationId}`;
}

interface DueReservation {
  id: string;
  userId: string | null;
  accountUsername: string;
  expiresAt: string;
}

/**
 * Active reservations ending within (`after`, `minutes`] from now with no notice for
 * `minutes` that covers their end. The range is read through the (status, expires_at)
 * index, the notice through its primary key.
 */
const DUE_IN_BAND = `SELECT r.id, r.user_id AS userId, r.account_username AS accountUsername, r.expires_at AS expiresAt
  FROM reservations r
 WHERE r.status = 'active' AND r.expires_at > ? AND r.expires_at <= ?
   AND NOT EXISTS (SELECT 1 FROM reservation_notices n
                    WHERE n.reservation_id = r.id AND n.minutes_before = ? AND n.sent_at >= r.expires_at - INTERVAL ? MINUTE)
 ORDER BY r.expires_at
 LIMIT ?`;

export interface NoticeSenderDeps {
  prisma: Database;
  access: Pick<MachineAccess, 'open'>;
  events: Pick<EventBus, 'raise'>;
  /** Minutes before the end at which notices go out (config.reservations.noticeMinutes); none: no notices. */
  noticeMinutes: readonly number[];
  log: Pick<ReservationLog, 'warn'>;
  machineTimeoutMs?: number;
}

export interface NoticeTick {
  /** Notices this process claimed (and so sent). */
  sent: number;
  /** Terminals they reached, on every machine. */
  terminals: number;
}

export function createNoticeSender({ prisma, access, events, noticeMinutes, log, machineTimeoutMs = MACHINE_NOTICE_TIMEOUT_MS }: NoticeSenderDeps) {
  const bands = noticeBands(noticeMinutes);

  /**
   * Claims the `minutes` notice of the end `expiresAt` at `now`: true for the one process
   * whose write won. Only while the reservation is active and still ends then (not
   * released, nor extended, since it was read). A row for an earlier end (the reservation
   * was extended since) is taken over by a conditional update; else the row is inserted,
   * and a duplicate key means another process has it. sent_at comes from this process's
   * clock, as every time it is compared with does.
   */
  async function claim(reservationId: string, minutes: number, expiresAt: Date, now: Date): Promise<boolean> {
    const coversFrom = new Date(expiresAt.getTime() - minutes * 60_000);
    const renewed = await prisma.$executeRaw`
      UPDATE reservation_notices n JOIN reservations r ON r.id = n.reservation_id SET n.sent_at = ${now}
       WHERE n.reservation_id = ${reservationId} AND n.minutes_before = ${minutes} AND n.sent_at < ${coversFrom}
         AND r.status = 'active' AND r.expires_at = ${expiresAt}`;
    if (renewed === 1) return true;
    try {
      const inserted = await prisma.$executeRaw`
        INSERT INTO reservation_notices (reservation_id, minutes_before, sent_at)
        SELECT r.id, ${minutes}, ${now} FROM reservations r WHERE r.id = ${reservationId} AND r.status = 'active' AND r.expires_at = ${expiresAt}`;
      return inserted === 1;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /** Writes `line` to the account's terminals on `machine`; how many it reached (0 when the machine failed: logged). */
  async function tellMachine(machine: MachineRow, r: DueReservation, line: string): Promise<number> {
    const work = (async () => {
      const ssh = await access.open(machine);
      try {
        return await writeToTerminals(ssh, r.accountUsername, line);
      } finally {
        ssh.close();
      }
    })();
    try {
      return await withTimeout(work, machineTimeoutMs, () => new Error(`no answer within ${machineTimeoutMs} ms`));
    } catch (err) {
      // The work goes on to its own SSH timeouts and closes its session; nothing waits for it.
      void work.catch(() => {});
      log.warn({ machine: machine.name, reservation: r.id, err: (err as Error).message }, 'could not write a reservation notice to its terminals');
      return 0;
    }
  }

  /** Claims and sends the band's notice of `r`; the terminals reached, null when another process has it. */
  async function notify(r: DueReservation, band: NoticeBand, now: Date): Promise<number | null> {
    const expiresAt = new Date(r.expiresAt);
    if (!(await claim(r.id, band.minutes, expiresAt, now))) return null;
    // The larger notices' moments have passed: sent now, they would say more time is left
    // than there is. They count as sent with this one.
    for (const larger of band.larger) await claim(r.id, larger, expiresAt, now);
    await events.raise('reservation.expiring', { reservationId: r.id, userId: r.userId, expiresAt, minutesLeft: band.minutes });
    const machines = await prisma.machine.findMany({ where: { allocations: { some: { reservationId: r.id } } } });
    const line = noticeLine(r.id, expiresAt);
    const reached = await Promise.all(machines.map((m) => tellMachine(m, r, line)));
    return reached.reduce((a, b) => a + b, 0);
  }

  return {
    /** Sends every notice due now that no process has sent; nothing when no notices are configured. */
    async sendDue(now = new Date()): Promise<NoticeTick> {
      const tick: NoticeTick = { sent: 0, terminals: 0 };
      for (const band of bands) {
        const due = await prisma.$rows<DueReservation>(DUE_IN_BAND, [
          sqlTime(new Date(now.getTime() + band.after * 60_000)),
          sqlTime(new Date(now.getTime() + band.minutes * 60_000)),
          band.minutes,
          band.minutes,
          BATCH,
        ]);
        await mapLimit(due, CONCURRENCY, async (r) => {
          const reached = await notify(r, band, now);
          if (reached === null) return;
          tick.sent++;
          tick.terminals += reached;
        });
      }
      return tick;
    },
  };
}

export type NoticeSender = ReturnType<typeof createNoticeSender>;
