// Sending deliveries: the job. Deliveries are rows (the subscriber writes them); a round
// claims the due ones with one conditional update (a lease: this process, until the attempt
// must have ended), signs and sends each, and records the attempt and what comes next under
// that lease. A process killed mid-send leaves its lease to run out; another process then
// sends the delivery again, with the same webhook-id (at least once, never lost). Nothing
// here holds a lock of the database's other kinds (GET_LOCK): several berth processes on one
// database, or a Galera cluster, share the work by the rows alone.
//
// What an answer means follows the Standard Webhooks specification: a 2xx is delivered;
// anything else (3xx included: redirects are not followed) is retried after the next wait of
// the schedule, or later when the endpoint's Retry-After says so, until the schedule is used
// up (failed); 410 Gone disables the endpoint, and its other pending deliveries are cancelled.
import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { Database } from '../../infra/database.js';
import type { SecretBox } from '../../infra/secret-box.js';
import type { Egress, SendOutcome } from './egress.js';
import { claimDue, claimedBy, pruneFinished, type ClaimedDelivery } from './queries.js';

/** How often the job looks for due retries; a new delivery is sent at once (nudge). */
export const DELIVERY_INTERVAL_MS = 2000;
/**
 * Deliveries one round claims and sends at once; a full round goes again at once. Claiming no
 * more than are sent together keeps every attempt inside its lease (time limit + margin):
 * a claim of more, sent in turns behind a slow endpoint, would outlive its lease and be
 * sent by another process too.
 */
const BATCH = 10;
/** A lease outlives the attempt's time limit by this much: only a dead process lets one run out. */
const LEASE_MARGIN_MS = 30_000;
/** A Retry-After beyond this is taken as this. */
const RETRY_AFTER_MAX_MS = 24 * 3600_000;
/** The attempts kept per delivery (the latest). */
const ATTEMPTS_KEPT = 20;
/** Finished deliveries are kept this long, then deleted (hourly, a batch at a time). */
const KEEP_FINISHED_MS = 30 * 24 * 3600_000;
const PRUNE_EVERY_MS = 3600_000;
const PRUNE_BATCH = 1000;

export const GONE_REASON = 'the endpoint answered 410 Gone';

/** What comes after an attempt. */
export type NextStep =
  | { status: 'delivered' }
  | { status: 'pending'; nextAttemptAt: Date; retries: number }
  | { status: 'failed'; disable: string | null };

/** A Retry-After header (seconds, or an HTTP date) as a wait from `now`, within a day; null when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number): number | null {
  if (!header) return null;
  const trimmed = header.trim();
  const ms = /^\d+$/.test(trimmed) ? Number(trimmed) * 1000 : Date.parse(trimmed) - now;
  return Number.isNaN(ms) ? null : Math.min(Math.max(0, ms), RETRY_AFTER_MAX_MS);
}

/**
 * The step after `outcome`, for a delivery that has used `retries` of `schedule` (the waits
 * before each retry). A retry waits for the schedule's next wait, or for the endpoint's
 * Retry-After when that is longer: never sooner than the endpoint asked.
 */
export function afterAttempt(outcome: Pick<SendOutcome, 'statusCode' | 'retryAfter'>, retries: number, schedule: number[], now: number): NextStep {
  const code = outcome.statusCode;
  if (code !== null && code >= 200 && code < 300) return { status: 'delivered' };
  if (code === 410) return { status: 'failed', disable: GONE_REASON };
  if (retries >= schedule.length) return { status: 'failed', disable: null };
  const wait = Math.max(schedule[retries]!, retryAfterMs(outcome.retryAfter, now) ?? 0);
  return { status: 'pending', nextAttemptAt: new Date(now + wait), retries: retries + 1 };
}

/** What an attempt records when the endpoint answered something other than a 2xx. */
function errorOf(outcome: SendOutcome): string | null {
  if (outcome.error) return outcome.error;
  const code = outcome.statusCode;
  if (code === null || (code >= 200 && code < 300)) return null;
  if (code >= 300 && code < 400) return `HTTP ${code}: redirects are not followed`;
  return `HTTP ${code}`;
}

export interface DelivererDeps {
  prisma: Database;
  secretBox: SecretBox;
  egress: Egress;
  /** The waits before each retry (config.webhooks.retryDelaysMs). */
  retryDelaysMs: number[];
  timeoutMs: number;
  /** Names this process in leases. */
  instanceId: string;
  log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

export interface Deliverer {
  /** Sends what is due now (a round, again while there is more); resolves with how many were attempted. The job's tick. */
  pump(): Promise<number>;
  /** A delivery was just written: send it now, not at the next tick. */
  nudge(): void;
  /** Aborts the attempts in flight (they are left to the next process, at once) and waits for the round to end. */
  close(): Promise<void>;
}

export function createDeliverer(deps: DelivererDeps): Deliverer {
  const { prisma, secretBox, egress, retryDelaysMs, timeoutMs, instanceId, log } = deps;
  const abort = new AbortController();
  let closed = false;
  let running: Promise<number> | null = null;
  let again = false;
  let prunedAt = 0;

  /** An attempt cut short by closing: no attempt recorded, due at once for whichever process is next. */
  async function release(d: ClaimedDelivery, token: string) {
    await prisma.webhookDelivery.updateMany({ where: { id: d.id, leaseOwner: token }, data: { leaseOwner: null, leaseUntil: null } });
  }

  async function attempt(d: ClaimedDelivery, token: string): Promise<void> {
    const at = new Date();
    let outcome: SendOutcome;
    try {
      const signature = new Webhook(secretBox.open(d.secretSealed)).sign(d.id, at, d.payload);
      outcome = await egress.send({
        url: d.url,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'berth-webhooks',
          'webhook-id': d.id,
          'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body: d.payload,
        signal: abort.signal,
      });
    } catch (err) {
      // The secret does not open (the secret key was replaced): nothing can be signed.
      log.error({ err, webhookId: d.webhookId, deliveryId: d.id }, 'a webhook delivery could not be signed');
      outcome = { statusCode: null, retryAfter: null, body: null, error: 'the webhook secret cannot be read by this berth', durationMs: 0 };
    }
    if (abort.signal.aborted) return release(d, token);
    const step = afterAttempt(outcome, d.retries, retryDelaysMs, Date.now());
    const number = d.attempts + 1;
    await prisma.$transaction(async (tx) => {
      const { count } = await tx.webhookDelivery.updateMany({
        where: { id: d.id, leaseOwner: token },
        data: {
          status: step.status,
          attempts: number,
          leaseOwner: null,
          leaseUntil: null,
          ...(step.status === 'pending' && { nextAttemptAt: step.nextAttemptAt, retries: step.retries }),
          ...(step.status === 'delivered' && { deliveredAt: new Date() }),
        },
      });
      // The lease ran out and another process has the delivery: its attempt is the one recorded.
      if (count !== 1) return;
      await tx.webhookAttempt.create({
        data: { deliveryId: d.id, attempt: number, at, durationMs: outcome.durationMs, statusCode: outcome.statusCode, error: errorOf(outcome), responseBody: outcome.body },
      });
      await tx.webhookAttempt.deleteMany({ where: { deliveryId: d.id, attempt: { lte: number - ATTEMPTS_KEPT } } });
      if (step.status === 'failed' && step.disable) {
        await tx.webhook.update({ where: { id: d.webhookId }, data: { disabledAt: new Date(), disabledReason: step.disable } });
        await tx.webhookDelivery.updateMany({ where: { webhookId: d.webhookId, status: 'pending' }, data: { status: 'cancelled', leaseOwner: null, leaseUntil: null } });
      }
    });
    log.info({ webhookId: d.webhookId, deliveryId: d.id, attempt: number, statusCode: outcome.statusCode, outcome: step.status }, 'webhook delivery attempted');
  }

  async function prune(now: number) {
    if (now - prunedAt < PRUNE_EVERY_MS) return;
    prunedAt = now;
    await pruneFinished(prisma, new Date(now - KEEP_FINISHED_MS), PRUNE_BATCH);
  }

  /** One round: claims what is due, sends it; how many it attempted. */
  async function round(): Promise<number> {
    if (closed) return 0;
    const token = `${instanceId}/${randomUUID().slice(0, 8)}`;
    const now = new Date();
    const claimed = await claimDue(prisma, token, now, new Date(now.getTime() + timeoutMs + LEASE_MARGIN_MS), BATCH);
    if (claimed === 0) {
      await prune(now.getTime());
      return 0;
    }
    const deliveries = await claimedBy(prisma, token);
    await Promise.all(deliveries.map((d) => attempt(d, token)));
    if (claimed === BATCH) again = true;
    return deliveries.length;
  }

  function pump(): Promise<number> {
    if (running) {
      again = true;
      return running;
    }
    const run = (async () => {
      let attempted = 0;
      do {
        again = false;
        attempted += await round();
      } while (again && !closed);
      return attempted;
    })();
    running = run.finally(() => {
      running = null;
      // A nudge that came as the last round ended: its delivery goes now.
      if (again && !closed) nudge();
    });
    return running;
  }

  function nudge() {
    if (closed) return;
    pump().catch((err: unknown) => log.error({ err }, 'sending webhook deliveries failed; the job tries again'));
  }

  return {
    pump,
    nudge,
    async close() {
      closed = true;
      abort.abort();
      await running?.catch(() => {});
    },
  };
}
