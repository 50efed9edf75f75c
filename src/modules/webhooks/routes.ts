import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import { principalOf } from '../../http/principal.js';
import * as s from './schemas.js';
import type { DeliveryView, WebhookView, WebhooksService } from './service.js';

export function toWebhookDto(w: WebhookView) {
  return {
    id: w.id,
    url: w.url,
    description: w.description,
    events: w.events,
    owner: w.owner,
    enabled: w.disabledAt === null,
    disabled_at: w.disabledAt,
    disabled_reason: w.disabledReason,
    created_at: w.createdAt,
  };
}

export function toDeliveryDto(d: DeliveryView) {
  return {
    id: d.id,
    event: d.event as z.infer<typeof s.webhookEvent>,
    status: d.status as z.infer<typeof s.delivery>['status'],
    payload: JSON.parse(d.payload) as Record<string, unknown>,
    attempt_count: d.attemptCount,
    next_attempt_at: d.nextAttemptAt,
    created_at: d.createdAt,
    delivered_at: d.deliveredAt,
    attempts: d.attempts.map((a) => ({
      attempt: a.attempt,
      at: a.at,
      duration_ms: a.durationMs,
      status_code: a.statusCode,
      error: a.error,
      response_body: a.responseBody,
    })),
  };
}

export const webhooksRoutes: FastifyPluginAsyncZod<{ webhooks: WebhooksService }> = async (app, { webhooks }) => {
  app.post(
    '/v1/webhooks',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'createWebhook',
        tags: ['webhooks'],
        summary: 'Have events POSTed to a URL, signed per the Standard Webhooks specification; the secret is shown only in this answer',
        description:
          'Each delivery carries `webhook-id` (the same on every attempt), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` ' +
          'under the secret. Only a 2xx counts; redirects are not followed; failures are retried for about a day and a half (honouring Retry-After); 410 Gone disables the webhook.',
        security: bearerSecurity,
        body: s.createWebhookBody,
        response: { 201: s.createdWebhook, ...problemResponses(400, 401, 403, 422) },
      },
    },
    async (request, reply) => {
      const { webhook, secret } = await webhooks.create(principalOf(request), request.body);
      return reply.status(201).send({ ...toWebhookDto(webhook), secret });
    },
  );

  app.get(
    '/v1/webhooks',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listWebhooks',
        tags: ['webhooks'],
        summary: "Your webhooks, newest first (admins: ?all=true for everyone's)",
        security: bearerSecurity,
        querystring: s.listWebhooksQuery,
        response: { 200: page(s.webhook), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await webhooks.list(principalOf(request), request.query);
      return { items: items.map(toWebhookDto), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/webhooks/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getWebhook',
        tags: ['webhooks'],
        summary: 'Read a webhook (owner or admin); the secret is never shown again',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.webhook, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => toWebhookDto(await webhooks.getOrThrow(principalOf(request), request.params.id)),
  );

  app.delete(
    '/v1/webhooks/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'deleteWebhook',
        tags: ['webhooks'],
        summary: 'Delete a webhook and its deliveries (owner or admin)',
        security: bearerSecurity,
        params: idParams,
        response: { 204: z.null().meta({ description: 'deleted' }), ...problemResponses(400, 401, 404) },
      },
    },
    async (request, reply) => {
      await webhooks.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listWebhookDeliveries',
        tags: ['webhooks'],
        summary: "A webhook's deliveries, newest first, each with its attempts (owner or admin)",
        security: bearerSecurity,
        params: idParams,
        querystring: s.listDeliveriesQuery,
        response: { 200: page(s.delivery), ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await webhooks.deliveries(principalOf(request), request.params.id, request.query);
      return { items: items.map(toDeliveryDto), next_cursor: nextCursor };
    },
  );

  app.post(
    '/v1/webhooks/:id/deliveries/:deliveryId/redeliver',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'redeliverWebhookDelivery',
        tags: ['webhooks'],
        summary: 'Send a delivery again now, with the same webhook-id and body and its retries afresh (owner or admin)',
        security: bearerSecurity,
        params: s.deliveryParams,
        response: { 202: s.delivery, ...problemResponses(400, 401, 404, 409) },
      },
    },
    async (request, reply) => {
      const d = await webhooks.redeliver(principalOf(request), request.params.id, request.params.deliveryId);
      return reply.status(202).send(toDeliveryDto(d));
    },
  );
};
