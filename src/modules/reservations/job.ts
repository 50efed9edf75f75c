// The reservations' background job: every BERTH_EXPIRY_INTERVAL_SECONDS release expired
// reservations and reconcile what a crash left half-done (also once at start-up). The
// job runner never overlaps its ticks within a process; across processes, the
// conditional claims in the service make each reservation's release happen once.
import type { EventBus } from '../../events/bus.js';
import type { Job } from '../../infra/jobs.js';
import type { SchedulerTick } from './scheduler.js';
import type { ReservationsService } from './service.js';

export interface TickResult {
  expired: number;
  rolledBack: number;
  finished: number;
  freed: number;
}

export function reservationsJob(
  reservations: Pick<ReservationsService, 'expireDue' | 'reconcile'>,
  opts: { intervalSeconds: number; log: { info(obj: object, msg: string): void } },
): Job<TickResult> {
  return {
    name: 'reservations',
    intervalMs: opts.intervalSeconds * 1000,
    async tick() {
      const expired = await reservations.expireDue();
      const reconciled = await reservations.reconcile();
      if (expired || reconciled.rolledBack || reconciled.finished || reconciled.freed) {
        opts.log.info({ expired, ...reconciled }, 'reservation job');
      }
      return { expired, ...reconciled };
    },
  };
}

/**
 * The scheduler's job (scheduler.ts): every BERTH_SCHEDULER_INTERVAL_SECONDS, and at once
 * when machines may have come free or left the pool (`nudge`). A nudge while a tick runs
 * makes it run once more when it ends: the tick may have read the pool before the change.
 */
export function schedulerJob(tick: () => Promise<SchedulerTick>, opts: { intervalSeconds: number; log: { info(obj: object, msg: string): void } }) {
  let again = false;
  const job: Job<SchedulerTick> = {
    name: 'scheduler',
    intervalMs: opts.intervalSeconds * 1000,
    async tick() {
      const total: SchedulerTick = { expired: 0, replanned: 0, failed: 0, started: 0 };
      // A few rounds at most: the tick's own changes (a wait ending, a booking failing) nudge too.
      for (let round = 0; round < 3; round++) {
        again = false;
        const r = await tick();
        for (const k of Object.keys(total) as (keyof SchedulerTick)[]) total[k] += r[k];
        if (!again) break;
      }
      if (total.expired || total.replanned || total.failed || total.started) opts.log.info({ ...total }, 'scheduler');
      return total;
    },
  };
  return {
    job,
    /** Asks for a tick now (joined, or repeated after the one running). */
    nudge(runNow: () => Promise<unknown>) {
      again = true;
      runNow().catch(() => {
        // The runner logs a failed tick; a stopped runner means berth is closing.
      });
    },
  };
}

/** The changes after which the scheduler may have something to do at once. */
export function nudgeSchedulerOn(events: Pick<EventBus, 'on'>, nudge: () => void): void {
  events.on('reservation.changed', (e) => {
    if (e.to === 'released' || e.to === 'failed') nudge();
  });
  events.on('machine.changed', (e) => {
    if (e.status !== null && e.status !== 'reserved') nudge();
  });
}
