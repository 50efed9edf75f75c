// Every background job of a berth process, from start-up to close, one line each (the
// runner, infra/jobs.ts, ticks them at start-up, then on their interval). VMs outlive the
// process: at start-up their QEMUs are re-adopted (or found dead) by the VM watch, and
// closing leaves them running.
import type { Config } from './config.js';
import type { Job } from './infra/jobs.js';
import { reservationsJob, type schedulerJob } from './modules/reservations/job.js';
import { TEMPLATE_CHECK_MS } from './modules/vms/templates.js';
import { DELIVERY_INTERVAL_MS } from './modules/webhooks/delivery.js';
import type { Services } from './wiring.js';

export function backgroundJobs(
  { reservations, notices, vms, images, sessions, reprovisioner, vmTemplates, webhookDeliveries }: Pick<
    Services,
    'reservations' | 'notices' | 'vms' | 'images' | 'sessions' | 'reprovisioner' | 'vmTemplates' | 'webhookDeliveries'
  >,
  scheduler: ReturnType<typeof schedulerJob>,
  config: Pick<Config, 'reservations' | 'vms' | 'images' | 'sessions'>,
  log: { info(obj: object, msg: string): void },
): Job[] {
  const jobs: (Job | null)[] = [
    reservationsJob(reservations, { intervalSeconds: config.reservations.expiryIntervalSeconds, log }),
    // Queued requests and bookings start here (also at once after a release: app.ts nudges it).
    scheduler.job,
    // Notices of a coming end: a tick at least every 30 s, so that one arrives at most that late.
    { name: 'notices', intervalMs: Math.min(30, config.reservations.schedulerIntervalSeconds) * 1000, tick: () => notices.sendDue() },
    { name: 'vms', intervalMs: config.vms.watchSeconds * 1000, tick: () => vms.watch() },
    { name: 'images', intervalMs: config.images.watchSeconds * 1000, tick: () => images.failInterrupted() },
    { name: 'sessions', intervalMs: config.sessions.pruneIntervalSeconds * 1000, tick: () => sessions.prune() },
    // Machines a tenant was root on, reinstalled by the admin's command (it runs on after the tick).
    reprovisioner && { name: 'reprovision', intervalMs: config.reservations.expiryIntervalSeconds * 1000, tick: () => reprovisioner.startDue() },
    // Pools come back as clones: pooled images' templates are made (again) in the background.
    vmTemplates && { name: 'vm-templates', intervalMs: TEMPLATE_CHECK_MS, tick: () => vmTemplates.check() },
    // Webhook deliveries that are due (retries; a new one is sent at once when it is written).
    { name: 'webhooks', intervalMs: DELIVERY_INTERVAL_MS, tick: () => webhookDeliveries.pump() },
  ];
  return jobs.filter((job) => job !== null);
}
