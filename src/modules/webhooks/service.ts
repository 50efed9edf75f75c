// Webhooks: a person's endpoints and what was sent to them. This file answers the routes;
// the other parts have files of their own:
//   event-map.ts       the event types, and which domain event makes which
//   subscriber.ts      domain events → delivery rows
//   delivery.ts        the job: claims due deliveries, signs, sends, records, retries
//   egress.ts          the guarded HTTP sender (every address checked at connect time)
//   address-policy.ts  which addresses a webhook may reach
//   queries.ts         the SQL
// A webhook is its owner's: another user is told it does not exist; admins see them all.
import { randomBytes } from 'node:crypto';
import { AppError } from '../../errors/app-error.js';
import type { Database } from '../../infra/database.js';
import { afterCursor, encodeCursor, pageOf } from '../../infra/paging.js';
import type { SecretBox } from '../../infra/secret-box.js';
import type { Principal } from '../../shared/principal.js';
import { isoTime, isoTimeOrNull, type IsoTime } from '../../shared/timestamps.js';
import { lockUser } from '../identity/queries.js';
import type { Deliverer } from './delivery.js';
import type { Egress } from './egress.js';
import { ADMIN_EVENTS, type WebhookEvent } from './event-map.js';
import { deliveriesPage, deliveryById, type DeliveryView } from './queries.js';

/** How many webhooks one user may have. */
export const MAX_WEBHOOKS_PER_USER = 20;
/** Random bytes of a secret (the specification asks for 24 to 64). */
const SECRET_BYTES = 32;

export interface WebhookView {
  id: string;
  url: string;
  description: string | null;
  events: WebhookEvent[];
  owner: string;
  disabledAt: IsoTime | null;
  disabledReason: string | null;
  createdAt: IsoTime;
}

export type { DeliveryView };

const notFound = () => new AppError('webhook_not_found', 'no such webhook');

const VIEW_SELECT = {
  id: true,
  userId: true,
  url: true,
  description: true,
  events: true,
  disabledAt: true,
  disabledReason: true,
  createdAt: true,
  user: { select: { username: true } },
} as const;

type ViewRow = { id: string; url: string; description: string | null; events: unknown; disabledAt: Date | null; disabledReason: string | null; createdAt: Date; user: { username: string } };

function view(w: ViewRow): WebhookView {
  return {
    id: w.id,
    url: w.url,
    description: w.description,
    events: w.events as WebhookEvent[],
    owner: w.user.username,
    disabledAt: isoTimeOrNull(w.disabledAt),
    disabledReason: w.disabledReason,
    createdAt: isoTime(w.createdAt),
  };
}

export interface WebhooksDeps {
  prisma: Database;
  secretBox: SecretBox;
  egress: Pick<Egress, 'refusalOf'>;
  deliverer: Pick<Deliverer, 'nudge'>;
}

export function createWebhooksService({ prisma, secretBox, egress, deliverer }: WebhooksDeps) {
  /** Owner or admin see it; anyone else is told it does not exist. */
  async function visibleOrThrow(actor: Principal, id: string) {
    const w = await prisma.webhook.findUnique({ where: { id }, select: VIEW_SELECT });
    if (!w || (w.userId !== actor.userId && actor.role !== 'admin')) throw notFound();
    return w;
  }

  return {
    /** A new webhook of the caller's, with its secret (returned only here, stored sealed). */
    async create(actor: Principal, body: { url: string; events: WebhookEvent[]; description?: string }): Promise<{ webhook: WebhookView; secret: string }> {
      const adminOnly = body.events.filter((e) => ADMIN_EVENTS.includes(e));
      if (adminOnly.length > 0 && actor.role !== 'admin') {
        throw new AppError('admin_required', `only admins may hear ${adminOnly.join(' and ')}: they concern the whole pool`);
      }
      const refusal = await egress.refusalOf(new URL(body.url));
      if (refusal) throw new AppError('webhook_url_refused', refusal);
      const secret = `whsec_${randomBytes(SECRET_BYTES).toString('base64')}`;
      const created = await prisma.$transaction(async (tx) => {
        // The user's row, locked: two creations at once cannot both pass the count.
        await lockUser(tx, actor.userId);
        if ((await tx.webhook.count({ where: { userId: actor.userId } })) >= MAX_WEBHOOKS_PER_USER) {
          throw new AppError('webhook_limit_exceeded', `a user may have ${MAX_WEBHOOKS_PER_USER} webhooks; delete one first`);
        }
        return tx.webhook.create({
          data: { userId: actor.userId, url: body.url, description: body.description ?? null, events: body.events, secretSealed: secretBox.seal(secret) },
          select: VIEW_SELECT,
        });
      });
      return { webhook: view(created), secret };
    },

    /** The caller's webhooks, newest first; an admin's `all` lists everyone's. */
    async list(actor: Principal, q: { all: boolean; limit: number; cursor?: string }) {
      if (q.all && actor.role !== 'admin') throw new AppError('admin_required', "only admins may list everyone's webhooks");
      const rows = await prisma.webhook.findMany({
        where: { ...(!q.all && { userId: actor.userId }), ...afterCursor(q.cursor) },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: q.limit + 1,
        select: VIEW_SELECT,
      });
      return pageOf(rows.map(view), q.limit, encodeCursor);
    },

    getOrThrow: async (actor: Principal, id: string) => view(await visibleOrThrow(actor, id)),

    /** Deletes the webhook with its deliveries: nothing more is sent to it. */
    async remove(actor: Principal, id: string): Promise<void> {
      await visibleOrThrow(actor, id);
      await prisma.webhook.deleteMany({ where: { id } });
    },

    async deliveries(actor: Principal, id: string, q: { limit: number; cursor?: string }) {
      await visibleOrThrow(actor, id);
      return deliveriesPage(prisma, id, q);
    },

    /**
     * Sends a delivery again, now, with its retries afresh: same webhook-id and body (a
     * receiver that has it already can tell). Not while an attempt of it is in flight.
     */
    async redeliver(actor: Principal, id: string, deliveryId: string): Promise<DeliveryView> {
      const w = await visibleOrThrow(actor, id);
      const before = await deliveryById(prisma, id, deliveryId);
      if (!before) throw new AppError('webhook_delivery_not_found', 'no such delivery of this webhook');
      if (w.disabledAt) throw new AppError('webhook_disabled', `the webhook is disabled (${w.disabledReason}); create a new one`);
      const now = new Date();
      const { count } = await prisma.webhookDelivery.updateMany({
        where: { id: deliveryId, webhookId: id, OR: [{ leaseUntil: null }, { leaseUntil: { lt: now } }] },
        data: { status: 'pending', retries: 0, nextAttemptAt: now, deliveredAt: null, leaseOwner: null, leaseUntil: null },
      });
      if (count !== 1) throw new AppError('delivery_in_progress', 'the delivery is being sent right now; read its attempts in a moment');
      deliverer.nudge();
      return (await deliveryById(prisma, id, deliveryId)) ?? before;
    },
  };
}

export type WebhooksService = ReturnType<typeof createWebhooksService>;
