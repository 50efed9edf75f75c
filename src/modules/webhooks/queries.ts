// The webhooks module's SQL that Prisma's query API cannot say, or says slowly: who hears an
// event, what its payload names, the claim of due deliveries (one conditional UPDATE with a
// LIMIT, no lock of another kind), and the pages of deliveries with their attempts.
import type { Database, SqlReads } from '../../infra/database.js';
import { afterCursorSql, encodeCursor, pageOf } from '../../infra/paging.js';
import { sqlTime, whereAll } from '../../infra/sql-where.js';
import type { WebhookEvent } from './event-map.js';

/** A webhook that hears an event, and whether its owner is an admin now. */
export interface Recipient {
  id: string;
  admin: boolean;
}

/**
 * The enabled webhooks of enabled users that listen for `type`: the owner's (`ownerId`) and
 * every admin's; admins' only when `ownerId` is null (an event about the pool, or a
 * reservation whose owner is gone).
 */
export async function recipientsOf(db: SqlReads, type: WebhookEvent, ownerId: string | null): Promise<Recipient[]> {
  const rows = await db.$rows<{ id: string; role: string }>(
    `SELECT w.id, u.role FROM webhooks w JOIN users u ON u.id = w.user_id
      WHERE w.disabled_at IS NULL AND u.disabled = 0 AND JSON_CONTAINS(w.events, JSON_QUOTE(?))
        AND (u.role = 'admin' ${ownerId ? 'OR w.user_id = ?' : ''})`,
    ownerId ? [type, ownerId] : [type],
  );
  return rows.map((r) => ({ id: r.id, admin: r.role === 'admin' }));
}

/** What a reservation event's payload names: the reservation's owner, account, machines and times. */
export async function reservationFacts(db: SqlReads, id: string) {
  const [r] = await db.$rows<{ owner: string; account: string; startAt: string | null; expiresAt: string | null }>(
    `SELECT owner_username AS owner, account_username AS account, start_at AS startAt, expires_at AS expiresAt FROM reservations WHERE id = ?`,
    [id],
  );
  if (!r) return null;
  const machines = await db.$rows<{ name: string }>(
    `SELECT m.name FROM reservation_machines rm JOIN machines m ON m.id = rm.machine_id WHERE rm.reservation_id = ? ORDER BY m.name`,
    [id],
  );
  return { ...r, machines: machines.map((m) => m.name) };
}

export async function machineFacts(db: SqlReads, id: string) {
  const [m] = await db.$rows<{ name: string; statusReason: string | null }>(`SELECT name, status_reason AS statusReason FROM machines WHERE id = ?`, [id]);
  return m ?? null;
}

export async function vmReason(db: SqlReads, id: string): Promise<string | null> {
  const [v] = await db.$rows<{ stateReason: string | null }>(`SELECT state_reason AS stateReason FROM vms WHERE id = ?`, [id]);
  return v?.stateReason ?? null;
}

/**
 * Claims at most `limit` deliveries that are due and not leased (or whose lease ran out: its
 * process died mid-send) for `token` until `leaseUntil`; how many it claimed. One statement:
 * of two processes claiming at once, each row goes to one of them.
 */
export async function claimDue(db: Database, token: string, now: Date, leaseUntil: Date, limit: number): Promise<number> {
  return db.$executeRawUnsafe(
    `UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?
      WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
      ORDER BY next_attempt_at LIMIT ?`,
    token,
    sqlTime(leaseUntil),
    sqlTime(now),
    sqlTime(now),
    limit,
  );
}

/** Deletes at most `batch` finished deliveries made before `before` (their attempts go with them). */
export async function pruneFinished(db: Database, before: Date, batch: number): Promise<number> {
  return db.$executeRawUnsafe(`DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ? LIMIT ?`, sqlTime(before), batch);
}

/** A claimed delivery, with what sending it takes. */
export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  url: string;
  secretSealed: Uint8Array;
  payload: string;
  attempts: number;
  retries: number;
}

export async function claimedBy(db: Database, token: string): Promise<ClaimedDelivery[]> {
  const rows = await db.webhookDelivery.findMany({
    where: { leaseOwner: token, status: 'pending' },
    select: { id: true, webhookId: true, payload: true, attempts: true, retries: true, webhook: { select: { url: true, secretSealed: true } } },
  });
  return rows.map(({ webhook, ...d }) => ({ ...d, url: webhook.url, secretSealed: webhook.secretSealed }));
}

/** A delivery as the API shows it, with its latest attempts. */
export interface DeliveryView {
  id: string;
  event: string;
  status: string;
  payload: string;
  attemptCount: number;
  nextAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
  attempts: AttemptView[];
}

export interface AttemptView {
  attempt: number;
  at: string;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  responseBody: string | null;
}

const DELIVERY_SELECT = `SELECT d.id, d.event, d.status, d.payload, d.attempts AS attemptCount, IF(d.status = 'pending', d.next_attempt_at, NULL) AS nextAttemptAt,
  d.created_at AS createdAt, d.delivered_at AS deliveredAt FROM webhook_deliveries d`;

async function withAttempts(db: SqlReads, deliveries: Omit<DeliveryView, 'attempts'>[]): Promise<DeliveryView[]> {
  if (deliveries.length === 0) return [];
  const attempts = await db.$rows<AttemptView & { deliveryId: string }>(
    `SELECT delivery_id AS deliveryId, attempt, at, duration_ms AS durationMs, status_code AS statusCode, error, response_body AS responseBody
       FROM webhook_attempts WHERE delivery_id IN (${deliveries.map(() => '?').join(',')}) ORDER BY attempt`,
    deliveries.map((d) => d.id),
  );
  return deliveries.map((d) => ({ ...d, attempts: attempts.filter((a) => a.deliveryId === d.id).map(({ deliveryId: _, ...a }) => a) }));
}

/** A page of a webhook's deliveries, newest first. */
export async function deliveriesPage(db: SqlReads, webhookId: string, q: { limit: number; cursor?: string }) {
  const where = whereAll([['d.webhook_id = ?', webhookId], afterCursorSql(q.cursor, 'd')]);
  const rows = await db.$rows<Omit<DeliveryView, 'attempts'>>(`${DELIVERY_SELECT} ${where.sql} ORDER BY d.created_at DESC, d.id DESC LIMIT ?`, [...where.values, q.limit + 1]);
  const page = pageOf(rows, q.limit, encodeCursor);
  return { items: await withAttempts(db, page.items), nextCursor: page.nextCursor };
}

export async function deliveryById(db: SqlReads, webhookId: string, id: string): Promise<DeliveryView | null> {
  const rows = await db.$rows<Omit<DeliveryView, 'attempts'>>(`${DELIVERY_SELECT} WHERE d.webhook_id = ? AND d.id = ?`, [webhookId, id]);
  return (await withAttempts(db, rows))[0] ?? null;
}
