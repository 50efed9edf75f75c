// What GET /v1/machines/{name}/schedule and GET /v1/pool/availability take and answer: a
// range of time (from now by default, a week long, at most 31 days) and the windows in it.
import { z } from 'zod';
import { timestamp, uuid } from '../../http/common-schemas.js';
import { listMachinesQuery, machineStatus } from '../machines/schemas.js';
import { WINDOW_STATUSES } from './windows.js';

const DAY_MS = 86_400_000;
export const DEFAULT_RANGE_DAYS = 7;
export const MAX_RANGE_DAYS = 31;

/** An RFC 3339 moment as a query parameter: with Z or an offset. */
const moment = z.iso.datetime({ offset: true });

/**
 * The range a query asks for, in milliseconds: `from` defaults to now and is never earlier
 * (the past is not planned, so there is nothing to show of it); `to` defaults to a week
 * after `from`.
 */
export function resolveRange(query: { from?: string; to?: string }, now: number): { from: number; to: number } {
  const from = Math.max(query.from === undefined ? now : Date.parse(query.from), now);
  return { from, to: query.to === undefined ? from + DEFAULT_RANGE_DAYS * DAY_MS : Date.parse(query.to) };
}

const range = {
  from: moment.optional().meta({ description: 'RFC 3339; default now (an earlier moment is taken as now: the past is not shown)', examples: ['2026-12-09T09:00:00Z'] }),
  to: moment.optional().meta({ description: `RFC 3339, after from and at most ${MAX_RANGE_DAYS} days after it; default ${DEFAULT_RANGE_DAYS} days after from`, examples: ['2026-12-10T09:00:00Z'] }),
};

/** The range must end after it starts (and in the future), and span at most MAX_RANGE_DAYS. */
const boundedRange = <T extends z.ZodObject<typeof range>>(query: T) =>
  query
    .refine((q) => {
      const { from, to } = resolveRange(q, Date.now());
      return to > from;
    }, { message: 'to must be after from, and in the future', path: ['to'] })
    .refine((q) => {
      const { from, to } = resolveRange(q, Date.now());
      return to - from <= MAX_RANGE_DAYS * DAY_MS;
    }, { message: `from and to may be at most ${MAX_RANGE_DAYS} days apart`, path: ['to'] });

export const scheduleQuery = boundedRange(z.object(range));

export const availabilityQuery = boundedRange(
  z.object({
    ...range,
    type: listMachinesQuery.shape.type,
    // The machines list's tag filters (key:value, repeatable), under the name this route has.
    tags: listMachinesQuery.shape.tag,
  }),
);

const windowStatus = z.enum(WINDOW_STATUSES).meta({
  description: 'what holds the machine: a reservation being set up (provisioning), in use (active), being released (releasing), or a booking (scheduled)',
});

export const machineSchedule = z
  .object({
    machine: z.string(),
    from: timestamp,
    to: timestamp,
    windows: z.array(
      z.object({
        start: timestamp.meta({ description: 'a reservation in use or being released: now (the past is not shown)' }),
        end: timestamp,
        status: windowStatus,
        reservation_id: uuid.nullable().meta({ description: 'your own reservations only (all for admins); null for anyone else’s' }),
        owner: z.string().nullable().meta({ description: 'your own reservations only (all for admins); null for anyone else’s' }),
      }),
    ),
  })
  .meta({
    id: 'MachineSchedule',
    description: 'The windows of time in which a reservation holds, or a booking will hold, the machine, in [start, end) order of start.',
    examples: [
      {
        machine: 'gpu-01',
        from: '2026-12-08T09:00:00.000Z',
        to: '2026-12-15T09:00:00.000Z',
        windows: [
          { start: '2026-12-08T09:00:00.000Z', end: '2026-12-08T11:00:00.000Z', status: 'active', reservation_id: null, owner: null },
          {
            start: '2026-12-09T09:00:00.000Z',
            end: '2026-12-09T17:00:00.000Z',
            status: 'scheduled',
            reservation_id: '3f2b8c1a-5d4e-4f6a-8b7c-9d0e1f2a3b4c',
            owner: 'alice',
          },
        ],
      },
    ],
  });

export const poolAvailability = z
  .object({
    from: timestamp,
    to: timestamp,
    machines: z.array(
      z.object({
        name: z.string(),
        type: z.string(),
        status: machineStatus.meta({ description: 'only available and reserved machines are in the pool; the others count as never free' }),
        windows: z.array(z.object({ start: timestamp, end: timestamp, status: windowStatus })),
      }),
    ),
    free: z
      .array(z.object({ start: timestamp, end: timestamp, count: z.number().int() }))
      .meta({ description: 'how many of these machines are in the pool and free, in each stretch of [from, to) (consecutive, no two alike in a row)' }),
  })
  .meta({
    id: 'PoolAvailability',
    examples: [
      {
        from: '2026-12-08T09:00:00.000Z',
        to: '2026-12-15T09:00:00.000Z',
        machines: [
          { name: 'gpu-01', type: 'gpu', status: 'reserved', windows: [{ start: '2026-12-08T09:00:00.000Z', end: '2026-12-08T11:00:00.000Z', status: 'active' }] },
          { name: 'gpu-02', type: 'gpu', status: 'available', windows: [{ start: '2026-12-09T09:00:00.000Z', end: '2026-12-09T17:00:00.000Z', status: 'scheduled' }] },
        ],
        free: [
          { start: '2026-12-08T09:00:00.000Z', end: '2026-12-08T11:00:00.000Z', count: 1 },
          { start: '2026-12-08T11:00:00.000Z', end: '2026-12-09T09:00:00.000Z', count: 2 },
          { start: '2026-12-09T09:00:00.000Z', end: '2026-12-09T17:00:00.000Z', count: 1 },
          { start: '2026-12-09T17:00:00.000Z', end: '2026-12-15T09:00:00.000Z', count: 2 },
        ],
      },
    ],
  });
