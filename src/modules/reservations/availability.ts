// What is booked when, for people deciding when to ask: one machine's schedule, and for the
// machines of a type and tags, their windows and how many of them are free in each stretch
// of a range. Read through windows.ts, as the scheduler reads the pool: what these show is
// what it plans with (a queued request's estimate is not a window: it holds nothing yet).
import { AppError } from '../../errors/app-error.js';
import type { Database } from '../../infra/database.js';
import { resolveRange } from './availability-schemas.js';
import { matches } from './planner.js';
import { readPool, type HeldWindow, type PoolMachine } from './windows.js';

/** A stretch of [from, to) and how many machines are free all through it. */
export interface FreeStep {
  start: number;
  end: number;
  count: number;
}

interface RangeQuery {
  from?: string;
  to?: string;
}

/** `key:value` tag filters, as the machines list takes them. */
const tagPairs = (filters: string[]) => filters.map((f) => [f.slice(0, f.indexOf(':')), f.slice(f.indexOf(':') + 1)] as const);

/** The windows that reach into [from, to), as they are (not cut to the range). */
const within = (windows: HeldWindow[], from: number, to: number) => windows.filter((w) => w.end > from && w.start < to);

/**
 * How many of `machines` are in the pool and free in each stretch of [from, to): the count
 * changes only where a window starts or ends; consecutive stretches with the same count
 * are one.
 */
export function freeSteps(machines: PoolMachine[], from: number, to: number): FreeStep[] {
  if (to <= from) return [];
  const pool = machines.filter((m) => m.inPool);
  const change = new Map<number, number>();
  const shift = (t: number, by: number) => change.set(t, (change.get(t) ?? 0) + by);
  for (const m of pool) {
    // The machine's windows merged (a booking may start as a release's allowance ends), cut to the range.
    let open: { start: number; end: number } | null = null;
    const close = () => {
      if (open) {
        shift(open.start, -1);
        shift(open.end, +1);
      }
    };
    for (const w of m.busy) {
      const start = Math.max(w.start, from);
      const end = Math.min(w.end, to);
      if (end <= start) continue;
      if (open && start <= open.end) open.end = Math.max(open.end, end);
      else {
        close();
        open = { start, end };
      }
    }
    close();
  }
  const times = [...new Set([from, to, ...change.keys()])].sort((a, b) => a - b);
  const steps: FreeStep[] = [];
  let count = pool.length;
  for (let i = 0; i + 1 < times.length; i++) {
    const start = times[i]!;
    count += change.get(start) ?? 0;
    const last = steps.at(-1);
    if (last && last.count === count) last.end = times[i + 1]!;
    else steps.push({ start, end: times[i + 1]!, count });
  }
  return steps;
}

export function createAvailabilityService(deps: { prisma: Database; releaseAllowanceMs?: number }) {
  const { prisma, releaseAllowanceMs } = deps;

  return {
    /** The windows of the machine `name` in the range; 404 machine_not_found. */
    async schedule(name: string, query: RangeQuery) {
      const now = Date.now();
      const { from, to } = resolveRange(query, now);
      const [machine] = await readPool(prisma, { now, until: to, releaseAllowanceMs, names: [name] });
      if (!machine) throw new AppError('machine_not_found', `no machine named ${name}`);
      return { machine: machine.name, from, to, windows: within(machine.busy, from, to) };
    },

    /** The machines of `type` with every tag of `tags` (key:value), their windows, and how many are free when. */
    async availability(query: RangeQuery & { type?: string; tags: string[] }) {
      const now = Date.now();
      const { from, to } = resolveRange(query, now);
      const pairs = tagPairs(query.tags);
      const machines = (await readPool(prisma, { now, until: to, releaseAllowanceMs })).filter(
        (m) => matches(m, { type: query.type }) && pairs.every(([key, value]) => m.tags[key] === value),
      );
      return {
        from,
        to,
        machines: machines.map((m) => ({ name: m.name, type: m.type, status: m.status, windows: within(m.busy, from, to) })),
        free: freeSteps(machines, from, to),
      };
    },
  };
}

export type AvailabilityService = ReturnType<typeof createAvailabilityService>;
