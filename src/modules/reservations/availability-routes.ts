// GET /v1/machines/{name}/schedule and GET /v1/pool/availability: what is booked when, for
// any signed-in user. Whose reservation holds a machine is the owner's and the admins'
// business (as GET /v1/reservations/{id} is): anyone else sees that it is held, not by whom.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { bearerSecurity, problemResponses } from '../../http/common-schemas.js';
import { principalOf } from '../../http/principal.js';
import { nameParams } from '../machines/schemas.js';
import * as s from './availability-schemas.js';
import type { AvailabilityService } from './availability.js';
import type { HeldWindow } from './windows.js';

const iso = (ms: number) => new Date(ms).toISOString();

export const availabilityRoutes: FastifyPluginAsyncZod<{ availability: AvailabilityService }> = async (app, { availability }) => {
  app.get(
    '/v1/machines/:name/schedule',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getMachineSchedule',
        tags: ['reservations'],
        summary: 'When the machine is held: its reservations and bookings in a range of time',
        description:
          `From \`from\` (default now) to \`to\` (default ${s.DEFAULT_RANGE_DAYS} days later; at most ${s.MAX_RANGE_DAYS} days). ` +
          'Who holds a window is shown for your own reservations only (every one to admins).',
        security: bearerSecurity,
        params: nameParams,
        querystring: s.scheduleQuery,
        response: { 200: s.machineSchedule, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const mayKnow = (w: HeldWindow) => principal.role === 'admin' || (w.userId !== null && w.userId === principal.userId);
      const schedule = await availability.schedule(request.params.name, request.query);
      return {
        machine: schedule.machine,
        from: iso(schedule.from),
        to: iso(schedule.to),
        windows: schedule.windows.map((w) => ({
          start: iso(w.start),
          end: iso(w.end),
          status: w.status,
          reservation_id: mayKnow(w) ? w.reservationId : null,
          owner: mayKnow(w) ? w.owner : null,
        })),
      };
    },
  );

  app.get(
    '/v1/pool/availability',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getPoolAvailability',
        tags: ['reservations'],
        summary: 'How many machines of a type and tags are free when, and what holds each',
        description:
          `From \`from\` (default now) to \`to\` (default ${s.DEFAULT_RANGE_DAYS} days later; at most ${s.MAX_RANGE_DAYS} days); ` +
          '`type` and `tags` (key:value, repeatable) as the machines list filters them. A queued request holds nothing until it starts.',
        security: bearerSecurity,
        querystring: s.availabilityQuery,
        response: { 200: s.poolAvailability, ...problemResponses(400, 401) },
      },
    },
    async (request) => {
      const found = await availability.availability(request.query);
      return {
        from: iso(found.from),
        to: iso(found.to),
        machines: found.machines.map((m) => ({
          name: m.name,
          type: m.type,
          status: m.status,
          windows: m.windows.map((w) => ({ start: iso(w.start), end: iso(w.end), status: w.status })),
        })),
        free: found.free.map((step) => ({ start: iso(step.start), end: iso(step.end), count: step.count })),
      };
    },
  );
};
