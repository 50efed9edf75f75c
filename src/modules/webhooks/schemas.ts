import { z } from 'zod';
import { timestamp, uuid } from '../../http/common-schemas.js';
import { WEBHOOK_EVENTS } from './event-map.js';

const EXAMPLE_ID = '0f8fad5b-d9cb-469f-a165-70867728950e';
export const URL_MAX = 2048;

/** Whether `value` is a URL a webhook may have: http(s), a host, no credentials (URLs are shown and are no place for secrets). */
function urlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http or https URL';
  if (url.username || url.password) return 'must not carry credentials: the webhook secret signs each delivery';
  if (!url.hostname) return 'must name a host';
  return null;
}

export const webhookEvent = z.enum(WEBHOOK_EVENTS);

export const createWebhookBody = z
  .object({
    url: z
      .string()
      .max(URL_MAX)
      .superRefine((v, ctx) => {
        const problem = urlProblem(v);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .meta({ description: 'where deliveries are POSTed; its host must not be a loopback, private or link-local address (nor resolve to one)' }),
    events: z
      .array(webhookEvent)
      .min(1)
      .max(WEBHOOK_EVENTS.length)
      .refine((events) => new Set(events).size === events.length, 'must not repeat an event')
      .meta({ description: '`vm.failed` and `machine.offline` are for admins only' }),
    description: z.string().max(255).optional(),
  })
  .strict()
  .meta({ examples: [{ url: 'https://hooks.example.com/berth', events: ['reservation.activated', 'reservation.expiring'], description: 'my lab bot' }] });

const webhookFields = {
  id: uuid,
  url: z.string(),
  description: z.string().nullable(),
  events: z.array(webhookEvent),
  owner: z.string().meta({ description: "the owner's username" }),
  enabled: z.boolean().meta({ description: 'false once berth stopped sending to it (see disabled_reason)' }),
  disabled_at: timestamp.nullable(),
  disabled_reason: z.string().nullable(),
  created_at: timestamp,
};

const exampleWebhook = {
  id: EXAMPLE_ID,
  url: 'https://hooks.example.com/berth',
  description: 'my lab bot',
  events: ['reservation.activated', 'reservation.expiring'],
  owner: 'alice',
  enabled: true,
  disabled_at: null,
  disabled_reason: null,
  created_at: '2026-12-08T09:30:00.000Z',
};

export const webhook = z.object(webhookFields).meta({ id: 'Webhook', examples: [exampleWebhook] });

export const createdWebhook = z
  .object({
    ...webhookFields,
    secret: z.string().meta({ description: 'whsec_ + base64 of 32 random bytes: verifies the webhook-signature of each delivery. Shown only now.' }),
  })
  .meta({ id: 'CreatedWebhook', examples: [{ ...exampleWebhook, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3yG6VWW8x9E=' }] });

export const listWebhooksQuery = z.object({
  all: z
    .enum(['true', 'false'])
    .optional()
    .transform((v) => v === 'true')
    .meta({ description: "admin: everyone's webhooks" }),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

export const listDeliveriesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

export const deliveryParams = z.object({ id: uuid, deliveryId: uuid });

const attempt = z.object({
  attempt: z.number().int().meta({ description: '1 for the first; redeliveries go on counting' }),
  at: timestamp,
  duration_ms: z.number().int(),
  status_code: z.number().int().nullable().meta({ description: "the endpoint's HTTP status; null when none came" }),
  error: z.string().nullable().meta({ description: 'why the attempt did not count (a status other than 2xx, a refused address, a time-out …)' }),
  response_body: z.string().nullable().meta({ description: 'the first 4 KB of the answer' }),
});

export const delivery = z
  .object({
    id: uuid.meta({ description: 'also the webhook-id header: the same on every attempt' }),
    event: webhookEvent,
    status: z.enum(['pending', 'delivered', 'failed', 'cancelled']).meta({
      description: 'pending: to be (re)tried at next_attempt_at; failed: the retries are used up (or 410 Gone); cancelled: its webhook was disabled first',
    }),
    payload: z.record(z.string(), z.unknown()).meta({ description: 'the body as sent: {type, timestamp, data}' }),
    attempt_count: z.number().int(),
    next_attempt_at: timestamp.nullable(),
    created_at: timestamp,
    delivered_at: timestamp.nullable(),
    attempts: z.array(attempt).meta({ description: 'the latest attempts, oldest first' }),
  })
  .meta({
    id: 'WebhookDelivery',
    examples: [
      {
        id: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
        event: 'reservation.activated',
        status: 'delivered',
        payload: {
          type: 'reservation.activated',
          timestamp: '2026-12-08T09:31:00.000Z',
          data: { reservation_id: EXAMPLE_ID, owner: 'alice', status: 'active', machines: ['node-1'], expires_at: '2026-12-08T10:31:00.000Z' },
        },
        attempt_count: 1,
        next_attempt_at: null,
        created_at: '2026-12-08T09:31:00.000Z',
        delivered_at: '2026-12-08T09:31:00.120Z',
        attempts: [{ attempt: 1, at: '2026-12-08T09:31:00.010Z', duration_ms: 110, status_code: 204, error: null, response_body: '' }],
      },
    ],
  });
