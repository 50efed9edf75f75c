import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import { principalOf, viewerOf } from '../../http/principal.js';
import { failureReasonFor } from './failure-reasons.js';
import * as s from './schemas.js';
import type { ReservationView } from './queries.js';
import type { ReservationsService } from './service.js';

/**
 * known_hosts lines for the machines whose host key berth knows, as OpenSSH writes them:
 * `host key` on port 22, `[host]:port key` on any other. A client that uses them with
 * StrictHostKeyChecking=yes logs in with no trust-on-first-use prompt.
 */
export function knownHosts(machines: { host: string; port: number; hostKey: string | null }[]): string {
  return machines
    .filter((m) => m.hostKey)
    .map((m) => `${m.port === 22 ? m.host : `[${m.host}]:${m.port}`} ${m.hostKey}\n`)
    .join('');
}

/** The reservation as `viewer` may see it: why it failed in the machine's own words is for admins. */
export function toReservationDto(r: ReservationView, viewer: { admin: boolean }, password?: string) {
  const remaining = r.status === 'active' && r.expiresAt ? Math.max(0, Math.floor((Date.parse(r.expiresAt) - Date.now()) / 1000)) : 0;
  const machines = r.machines.map(({ machine }) => machine).sort((a, b) => a.name.localeCompare(b.name));
  return {
    id: r.id,
    status: r.status,
    owner: r.ownerUsername,
    account: { username: r.accountUsername, ...(password && { password }) },
    machines: machines.map((m) => ({ name: m.name, host: m.host, port: m.port, host_key: m.hostKey })),
    known_hosts: knownHosts(machines),
    duration_minutes: r.durationMinutes,
    start_at: r.startAt,
    wait_until: r.waitUntil,
    queue_position: r.queuePosition,
    estimated_start: r.estimatedStart,
    created_at: r.createdAt,
    activated_at: r.activatedAt,
    expires_at: r.expiresAt,
    max_expires_at: r.maxExpiresAt,
    seconds_remaining: remaining,
    released_at: r.releasedAt,
    release_reason: r.releaseReason,
    failure_reason: failureReasonFor(r.failureReason, viewer),
  };
}

export const reservationsRoutes: FastifyPluginAsyncZod<{ reservations: ReservationsService }> = async (app, { reservations }) => {
  app.post(
    '/v1/reservations',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'createReservation',
        tags: ['reservations'],
        summary: 'Reserve machines: now, when free, or booked ahead; all of them or none, with an account on each',
        description:
          'Claims `count` machines (or the named `machines`, filtered by `type`/`tags`) for `duration_minutes`, creates the Unix account on each over SSH, ' +
          'and answers once all are ready (201 `active`). If any machine fails, everything is undone and the problem names the machine (502). ' +
          'Requests are served in arrival order: one may start before an earlier queued request only where that delays none of them. ' +
          'Not free now: 409 `insufficient_capacity` with `earliest_start`, or with `wait_minutes` 202 `queued` (with `queue_position` and `estimated_start`; ' +
          'it becomes active as soon as it can, or ends `released`/`expired` after the wait). With `start_at`: 201 `scheduled` on concrete machines, activated then.',
        security: bearerSecurity,
        headers: s.idempotencyHeaders,
        body: s.createReservationBody,
        response: { 201: s.reservation, 202: s.reservation, ...problemResponses(400, 401, 404, 409, 422, 502) },
      },
    },
    async (request, reply) => {
      const { reservation, password, replayed } = await reservations.create(
        principalOf(request),
        request.body,
        request.headers['idempotency-key'],
      );
      if (replayed) reply.header('idempotent-replayed', 'true');
      return reply.status(reservation.status === 'queued' ? 202 : 201).send(toReservationDto(reservation, viewerOf(request), password));
    },
  );

  app.get(
    '/v1/reservations',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listReservations',
        tags: ['reservations'],
        summary: 'Your reservations, newest first (admins: ?all=true or ?user=name)',
        description:
          '`?user=` with your own name lists your own reservations; naming anyone else, or `?all=true`, needs the admin role (403 `admin_required`).',
        security: bearerSecurity,
        querystring: s.listReservationsQuery,
        response: { 200: page(s.reservation), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await reservations.list(principalOf(request), request.query);
      const viewer = viewerOf(request);
      return { items: items.map((r) => toReservationDto(r, viewer)), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/reservations/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getReservation',
        tags: ['reservations'],
        summary: 'Read a reservation (owner or admin)',
        description: 'The owner’s first read of a queued or booked reservation once active carries the password berth generated (`account.password`), once.',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.reservation, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const { reservation, password } = await reservations.getOrThrow(principalOf(request), request.params.id);
      return toReservationDto(reservation, viewerOf(request), password);
    },
  );

  app.post(
    '/v1/reservations/:id/extend',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'extendReservation',
        tags: ['reservations'],
        summary: 'Add minutes to an active reservation, within the policy cap',
        security: bearerSecurity,
        params: idParams,
        body: s.extendBody,
        response: { 200: s.reservation, ...problemResponses(400, 401, 404, 409, 422) },
      },
    },
    async (request) => toReservationDto(await reservations.extend(principalOf(request), request.params.id, request.body.minutes), viewerOf(request)),
  );

  app.delete(
    '/v1/reservations/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'releaseReservation',
        tags: ['reservations'],
        summary: 'Release now: the accounts are removed and the machines return to the pool; a queued or booked request is cancelled',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.reservation, ...problemResponses(400, 401, 404, 409) },
      },
    },
    async (request) => toReservationDto(await reservations.release(principalOf(request), request.params.id), viewerOf(request)),
  );

  app.post(
    '/v1/reservations/release-all',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'releaseAllReservations',
        tags: ['reservations'],
        summary: 'Release every active reservation (admin)',
        security: bearerSecurity,
        response: { 200: s.releaseAllResult, ...problemResponses(401, 403) },
      },
    },
    async () => ({ released: await reservations.releaseAll() }),
  );
};
