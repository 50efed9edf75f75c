// The reservations' background job: every BERTH_EXPIRY_INTERVAL_SECONDS release expired
// reservations and reconcile what a crash left half-done (also once at start-up). The
// job runner never overlaps its ticks within a process; across processes, the
// conditional claims in the service make each reservation's release happen once.
import type { Job } from '../../infra/jobs.js';
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
