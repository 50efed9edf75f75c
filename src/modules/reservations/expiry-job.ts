// The in-process interval job: every BERTH_EXPIRY_INTERVAL_SECONDS release expired
// reservations and reconcile what a crash left half-done. It also reconciles once at
// start-up. Ticks never overlap within a process; across processes, the conditional
// claims in the service make each reservation's release happen once.
import type { ReservationsService } from './service.js';

export interface TickResult {
  expired: number;
  rolledBack: number;
  finished: number;
  freed: number;
}

export interface ExpiryJob {
  /** Runs one tick now (start-up, tests); joins the running one if there is one. */
  tick(): Promise<TickResult | null>;
  stop(): Promise<void>;
}

export function startExpiryJob(
  reservations: Pick<ReservationsService, 'expireDue' | 'reconcile'>,
  opts: { intervalSeconds: number; log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void } },
): ExpiryJob {
  let running: Promise<TickResult | null> | null = null;
  let stopped = false;

  const tick = (): Promise<TickResult | null> => {
    if (running) return running;
    running = (async () => {
      try {
        const expired = await reservations.expireDue();
        const reconciled = await reservations.reconcile();
        if (expired || reconciled.rolledBack || reconciled.finished || reconciled.freed) {
          opts.log.info({ expired, ...reconciled }, 'reservation job');
        }
        return { expired, ...reconciled };
      } catch (err) {
        opts.log.error({ err }, 'reservation job failed; will retry next tick');
        return null;
      } finally {
        running = null;
      }
    })();
    return running;
  };

  const timer = setInterval(() => {
    if (!stopped) void tick();
  }, opts.intervalSeconds * 1000);
  timer.unref();

  return {
    tick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
