// The planner: when a request for machines can start, given the windows of time in which
// something holds each machine of the pool (live reservations, bookings, and what the plan
// itself has placed). Pure: no I/O, no clock; times are milliseconds since the epoch and
// every window is half-open, [start, end). windows.ts reads its input from the database;
// the scheduler (the queue, bookings, `earliest_start`) and the availability routes read
// the pool through it and plan with this.
//
// Fairness is conservative backfill, as Slurm schedules: the queue is planned in arrival
// order, each request at its earliest placement around the windows already there and the
// windows planned for every request before it. A later request can therefore start now
// only in a gap no earlier request's plan needs: it never delays an earlier one.
//
// Cost: each machine's busy windows are kept merged (disjoint, sorted), so whether it is
// free for a span is one binary search. The earliest placement merges, in time order, the
// stretches in which each matching machine could start the request (a heap over the
// machines), and stops at the first moment enough of them overlap: it reads only as far
// into the future as it must.

/** A span of time, [start, end), in milliseconds since the epoch. */
export interface Window {
  start: number;
  end: number;
}

export interface PlanMachine {
  id: string;
  name: string;
  type: string;
  tags: Record<string, string>;
  /** Available or reserved; false for maintenance, offline, needs_reprovision: never planned on. */
  inPool: boolean;
  /**
   * Status available and held by nobody: it may be handed out at `now`. One that is not is
   * taken to be busy at `now` even where none of its windows says so (readPool gives such a
   * machine a window that says until when).
   */
  freeNow: boolean;
  /** Sorted by start: live reservations ([now, end)), bookings ([start_at, end)), and what the plan has placed. */
  busy: Window[];
}

export interface PlanRequest {
  id: string;
  /** How many machines; with `names`, the named machines are what it needs. */
  count: number;
  /** Exactly these machines. */
  names?: string[];
  type?: string;
  /** Every one of these tags, with this value. */
  tags?: Record<string, string>;
  durationMs: number;
}

export interface Placement {
  start: number;
  /** In name order. */
  machineIds: string[];
}

/** Whether `machine` is one `req` asks for (time and status apart): its name, type and every tag. */
export function matches(machine: Pick<PlanMachine, 'name' | 'type' | 'tags'>, req: Pick<PlanRequest, 'names' | 'type' | 'tags'>): boolean {
  if (req.names && !req.names.includes(machine.name)) return false;
  if (req.type !== undefined && machine.type !== req.type) return false;
  for (const [key, value] of Object.entries(req.tags ?? {})) {
    if (machine.tags[key] !== value) return false;
  }
  return true;
}

const needed = (req: PlanRequest) => (req.names ? req.names.length : req.count);
const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * One machine's busy time as disjoint windows in time order (overlapping or touching ones
 * merged): both the starts and the ends then increase, and either can be binary-searched.
 */
class Timeline {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(
    readonly machine: PlanMachine,
    now: number,
  ) {
    const windows = machine.busy.filter((w) => w.end > w.start).sort((a, b) => a.start - b.start);
    // Not free now, whatever its windows say: at least the instant `now` is taken.
    if (!machine.freeNow) windows.unshift({ start: now, end: now + 1 });
    for (const w of windows) {
      const last = this.ends.length - 1;
      if (last >= 0 && w.start <= this.ends[last]!) this.ends[last] = Math.max(this.ends[last]!, w.end);
      else {
        this.starts.push(w.start);
        this.ends.push(w.end);
      }
    }
  }

  startAt(i: number): number {
    return i < this.starts.length ? this.starts[i]! : Infinity;
  }

  endAt(i: number): number {
    return this.ends[i]!;
  }

  /** The index of the first window that ends after `t` (the length when none does). */
  firstEndingAfter(t: number): number {
    return this.firstEnding((end) => end > t);
  }

  /** The index of the first window whose end passes `test` (ends increase: once one does, all later do). */
  private firstEnding(test: (end: number) => boolean): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (test(this.ends[mid]!)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Whether nothing holds the machine in [start, end). */
  isFree(start: number, end: number): boolean {
    return this.startAt(this.firstEndingAfter(start)) >= end;
  }

  /** Takes [w.start, w.end) too, merging it with the windows it overlaps or touches. */
  add(w: Window): void {
    const from = this.firstEnding((end) => end >= w.start);
    let to = from;
    while (to < this.starts.length && this.starts[to]! <= w.end) to++;
    const start = from < to ? Math.min(w.start, this.starts[from]!) : w.start;
    const end = from < to ? Math.max(w.end, this.ends[to - 1]!) : w.end;
    this.starts.splice(from, to - from, start);
    this.ends.splice(from, to - from, end);
  }
}

/**
 * Where one machine could start a request of `durationMs` from `from` on: the stretches
 * [first, last] of start times with the whole duration free, in time order, one at a time.
 */
class StartStretches {
  /** The current stretch: starts in [first, last] fit. */
  first = 0;
  last = 0;
  /** The window after the current gap. */
  private next: number;

  constructor(
    readonly timeline: Timeline,
    private readonly durationMs: number,
    from: number,
  ) {
    this.next = timeline.firstEndingAfter(from);
    // Inside a window at `from`: the first gap starts where that window ends.
    this.first = timeline.startAt(this.next) <= from ? timeline.endAt(this.next++) : from;
    this.settle();
  }

  /** Moves on to the next stretch (after `last`; only when `last` is finite: there is a window after it). */
  advance(): void {
    this.first = this.timeline.endAt(this.next++);
    this.settle();
  }

  /** From the gap starting at `first`, on to the first gap long enough (the one after the last window always is). */
  private settle(): void {
    for (;;) {
      this.last = this.timeline.startAt(this.next) - this.durationMs;
      if (this.first <= this.last) return;
      this.first = this.timeline.endAt(this.next++);
    }
  }
}

/**
 * A min-heap of the moments the sweep handles: where a machine's stretch starts (it joins)
 * and where it ends (it leaves after `last`). At the same moment, joins come first: a
 * stretch ending at t still includes t.
 */
interface Moment {
  at: number;
  joins: boolean;
  machine: number;
}
const before = (a: Moment, b: Moment) => a.at < b.at || (a.at === b.at && a.joins && !b.joins);

class MomentHeap {
  private readonly items: Moment[] = [];

  get size(): number {
    return this.items.length;
  }

  push(m: Moment): void {
    const items = this.items;
    items.push(m);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >>> 1;
      if (!before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): Moment {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let least = i;
        if (l < items.length && before(items[l]!, items[least]!)) least = l;
        if (r < items.length && before(items[r]!, items[least]!)) least = r;
        if (least === i) break;
        [items[i], items[least]] = [items[least]!, items[i]!];
        i = least;
      }
    }
    return top;
  }
}

interface Span {
  now: number;
  from: number;
  horizon: number;
}

/** The earliest placement on `timelines` (the request's in-pool matching machines, in name order). */
function earliestOn(timelines: Timeline[], req: PlanRequest, span: Span): Placement | null {
  const need = needed(req);
  if (need < 1 || timelines.length < need) return null;
  const from = Math.max(span.from, span.now);
  const stretches = timelines.map((t) => new StartStretches(t, req.durationMs, from));
  const heap = new MomentHeap();
  stretches.forEach((s, machine) => heap.push({ at: s.first, joins: true, machine }));
  let count = 0;
  while (heap.size > 0) {
    const moment = heap.pop();
    // Every later moment is later still: nothing more can start within the horizon (a
    // stretch that never ends leaves only after every stretch that could still join).
    if (moment.at > span.horizon || moment.at === Infinity) return null;
    const stretch = stretches[moment.machine]!;
    if (moment.joins) {
      if (++count >= need) {
        // Enough machines: those free then, in name order (some may not have joined yet
        // at this same moment).
        const start = moment.at;
        const free = timelines.filter((t) => t.isFree(start, start + req.durationMs));
        return { start, machineIds: free.slice(0, need).map((t) => t.machine.id) };
      }
      heap.push({ at: stretch.last, joins: false, machine: moment.machine });
    } else {
      count--;
      stretch.advance();
      heap.push({ at: stretch.first, joins: true, machine: moment.machine });
    }
  }
  return null;
}

/** The timelines of the in-pool machines `req` matches, in name order. */
const candidates = (timelines: Timeline[], req: PlanRequest) => timelines.filter((t) => t.machine.inPool && matches(t.machine, req));

const timelinesOf = (machines: PlanMachine[], now: number) => [...machines].sort(byName).map((m) => new Timeline(m, now));

/**
 * Earliest start ≥ `from` (and ≤ `horizon`) where `count` matching in-pool machines are all
 * free for [start, start + duration): at `now` they must also be freeNow. The candidate
 * starts are `from` and every end of a busy window ≥ `from` on a matching machine. The
 * machines are chosen in name order among those free (deterministic). Null when none
 * within the horizon.
 */
export function earliestPlacement(machines: PlanMachine[], req: PlanRequest, opts: { now: number; from: number; horizon: number }): Placement | null {
  const matching = machines.filter((m) => m.inPool && matches(m, req));
  return earliestOn(timelinesOf(matching, opts.now), req, opts);
}

/** Whether `req` fits at exactly `start` (a booking): the machines (in name order), or null. */
export function placementAt(machines: PlanMachine[], req: PlanRequest, opts: { now: number; start: number }): Placement | null {
  const need = needed(req);
  const end = opts.start + req.durationMs;
  const free = timelinesOf(
    machines.filter((m) => m.inPool && matches(m, req)),
    opts.now,
  ).filter((t) => t.isFree(opts.start, end));
  if (need < 1 || free.length < need) return null;
  return { start: opts.start, machineIds: free.slice(0, need).map((t) => t.machine.id) };
}

/**
 * Conservative backfill (as Slurm's): plans `queued` in arrival order, each at its earliest
 * placement given the windows and every earlier request's planned window. Returns each
 * request's placement (null: it cannot be placed within the horizon) and copies of the
 * machines with the plan's windows added. A request whose placement starts at `now` may
 * start now: that delays no earlier request.
 */
export function planQueue(
  machines: PlanMachine[],
  queued: PlanRequest[],
  opts: { now: number; horizon: number },
): { placements: Map<string, Placement | null>; machines: PlanMachine[] } {
  const timelines = timelinesOf(machines, opts.now);
  const timelineOf = new Map(timelines.map((t) => [t.machine.id, t]));
  const planned = new Map<string, Window[]>();
  const placements = new Map<string, Placement | null>();
  for (const req of queued) {
    const placement = earliestOn(candidates(timelines, req), req, { ...opts, from: opts.now });
    placements.set(req.id, placement);
    if (!placement) continue;
    const window = { start: placement.start, end: placement.start + req.durationMs };
    for (const id of placement.machineIds) {
      timelineOf.get(id)!.add(window);
      const windows = planned.get(id);
      if (windows) windows.push(window);
      else planned.set(id, [window]);
    }
  }
  const withPlan = machines.map((m) => {
    const added = planned.get(m.id);
    return added ? { ...m, busy: [...m.busy, ...added].sort((a, b) => a.start - b.start) } : { ...m, busy: [...m.busy] };
  });
  return { placements, machines: withPlan };
}
