// The planner decides who gets which machines when: the queue in arrival order with
// conservative backfill (a large request at the head is not starved by a stream of small
// ones, which still fill the gaps it leaves), bookings' windows respected, and never two
// overlapping windows on one machine — checked on hand-made pools and on random ones
// against a plain search of every candidate start.
import { describe, expect, it } from 'vitest';
import { earliestPlacement, placementAt, planQueue, type PlanMachine, type PlanRequest, type Placement, type Window } from '../../src/modules/reservations/planner.js';

const MIN = 60_000;
const NOW = Date.UTC(2026, 11, 8, 9, 0);
const at = (minutes: number) => NOW + minutes * MIN;
const WEEK = at(7 * 24 * 60);

function machine(name: string, busy: [number, number][] = [], more: Partial<PlanMachine> = {}): PlanMachine {
  const windows = busy.map(([s, e]) => ({ start: at(s), end: at(e) }));
  const heldNow = windows.some((w) => w.start <= NOW && w.end > NOW);
  return { id: `id-${name}`, name, type: 'server', tags: {}, inPool: true, freeNow: !heldNow, busy: windows, ...more };
}

const request = (id: string, count: number, minutes: number, more: Partial<PlanRequest> = {}): PlanRequest => ({ id, count, durationMs: minutes * MIN, ...more });
const minutesOf = (p: Placement | null | undefined) => (p ? (p.start - NOW) / MIN : null);

describe('earliestPlacement', () => {
  it('starts now on free machines, chosen in name order', () => {
    const pool = [machine('c'), machine('a'), machine('b')];
    expect(earliestPlacement(pool, request('r', 2, 30), { now: NOW, from: NOW, horizon: WEEK })).toEqual({ start: NOW, machineIds: ['id-a', 'id-b'] });
  });

  it('waits for the end of a window when too few machines are free', () => {
    const pool = [machine('a', [[0, 40]]), machine('b', [[0, 90]]), machine('c')];
    const p = earliestPlacement(pool, request('r', 2, 30), { now: NOW, from: NOW, horizon: WEEK });
    expect(p).toEqual({ start: at(40), machineIds: ['id-a', 'id-c'] });
  });

  it('respects bookings: a gap shorter than the request is skipped, a long enough one is used', () => {
    const pool = [machine('a', [[30, 90]])];
    expect(minutesOf(earliestPlacement(pool, request('long', 1, 60), { now: NOW, from: NOW, horizon: WEEK }))).toBe(90);
    expect(minutesOf(earliestPlacement(pool, request('short', 1, 20), { now: NOW, from: NOW, horizon: WEEK }))).toBe(0);
    expect(minutesOf(earliestPlacement(pool, request('exact', 1, 30), { now: NOW, from: NOW, horizon: WEEK }))).toBe(0);
  });

  it('matches names, type and every tag, and never plans on machines out of the pool', () => {
    const pool = [
      machine('gpu-1', [], { type: 'gpu', tags: { gpu: 'a100', rack: 'r1' } }),
      machine('gpu-2', [], { type: 'gpu', tags: { gpu: 'h100', rack: 'r1' } }),
      machine('gpu-3', [], { type: 'gpu', tags: { gpu: 'a100', rack: 'r2' }, inPool: false, freeNow: false }),
      machine('srv-1'),
    ];
    const plan = (req: PlanRequest) => earliestPlacement(pool, req, { now: NOW, from: NOW, horizon: WEEK })?.machineIds ?? null;
    expect(plan(request('t', 2, 10, { type: 'gpu' }))).toEqual(['id-gpu-1', 'id-gpu-2']);
    expect(plan(request('g', 1, 10, { tags: { gpu: 'a100' } }))).toEqual(['id-gpu-1']);
    expect(plan(request('g2', 2, 10, { tags: { gpu: 'a100' } }))).toBeNull();
    expect(plan(request('n', 2, 10, { names: ['srv-1', 'gpu-2'] }))).toEqual(['id-gpu-2', 'id-srv-1']);
    expect(plan(request('n2', 1, 10, { names: ['gpu-3'] }))).toBeNull();
    expect(plan(request('n3', 1, 10, { names: ['srv-1'], type: 'gpu' }))).toBeNull();
  });

  it('hands out at `now` only machines that are free now', () => {
    const held = machine('a', [], { freeNow: false });
    expect(earliestPlacement([held], request('r', 1, 10), { now: NOW, from: NOW, horizon: WEEK })?.start).toBeGreaterThan(NOW);
    const orphan = machine('a', [[0, 1]], { freeNow: false });
    expect(minutesOf(earliestPlacement([orphan], request('r', 1, 10), { now: NOW, from: NOW, horizon: WEEK }))).toBe(1);
    // A later start is a booking's: freeNow does not matter then.
    expect(minutesOf(earliestPlacement([held], request('r', 1, 10), { now: NOW, from: at(60), horizon: WEEK }))).toBe(60);
  });

  it('gives null for more machines than exist, and past the horizon', () => {
    const pool = [machine('a'), machine('b')];
    expect(earliestPlacement(pool, request('r', 3, 10), { now: NOW, from: NOW, horizon: WEEK })).toBeNull();
    const busy = [machine('a', [[0, 120]])];
    expect(earliestPlacement(busy, request('r', 1, 10), { now: NOW, from: NOW, horizon: at(60) })).toBeNull();
    expect(minutesOf(earliestPlacement(busy, request('r', 1, 10), { now: NOW, from: NOW, horizon: at(120) }))).toBe(120);
  });
});

describe('placementAt', () => {
  it('fits a booking exactly at its start, or not at all', () => {
    const pool = [machine('a', [[60, 120]]), machine('b', [[0, 30]]), machine('c', [], { inPool: false })];
    expect(placementAt(pool, request('r', 1, 30), { now: NOW, start: at(30) })).toEqual({ start: at(30), machineIds: ['id-a'] });
    expect(placementAt(pool, request('r', 2, 30), { now: NOW, start: at(30) })).toEqual({ start: at(30), machineIds: ['id-a', 'id-b'] });
    expect(placementAt(pool, request('r', 2, 31), { now: NOW, start: at(30) })).toBeNull();
    expect(placementAt(pool, request('r', 2, 30), { now: NOW, start: at(10) })).toBeNull();
  });
});

describe('planQueue', () => {
  // Six machines; three busy for the next hour.
  const pool = () => ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'].map((name, i) => machine(name, i >= 3 ? [[0, 60]] : []));

  it('does not starve a 6-machine request at the head of the queue behind a stream of 1-machine requests', () => {
    const queue = [request('head', 6, 60), ...Array.from({ length: 20 }, (_, i) => request(`small-${i}`, 1, 90))];
    const { placements } = planQueue(pool(), queue, { now: NOW, horizon: WEEK });
    expect(minutesOf(placements.get('head'))).toBe(60);
    for (let i = 0; i < 20; i++) {
      // Each would have fitted now on a free machine, and would have held it into the head's hour.
      expect(minutesOf(placements.get(`small-${i}`))).toBeGreaterThanOrEqual(120);
    }
  });

  it('keeps the head where it is while small requests keep coming, and starts it then', () => {
    // A tick every ten minutes: a 90-minute request arrives; whatever is placed at `now` starts.
    let machines = pool();
    let queue = [request('head', 6, 60)];
    const started: { id: string; start: number; end: number }[] = [];
    for (let tick = 0; tick <= 60; tick += 10) {
      const now = at(tick);
      machines = machines.map((m) => ({ ...m, freeNow: !m.busy.some((w) => w.start <= now && w.end > now) }));
      queue.push(request(`small-${tick}`, 1, 90));
      const { placements } = planQueue(machines, queue, { now, horizon: WEEK });
      if (tick < 60) expect(minutesOf(placements.get('head'))).toBe(60);
      for (const req of queue) {
        const p = placements.get(req.id);
        if (p?.start !== now) continue;
        started.push({ id: req.id, start: now, end: now + req.durationMs });
        machines = machines.map((m) => (p.machineIds.includes(m.id) ? { ...m, freeNow: false, busy: [...m.busy, { start: now, end: now + req.durationMs }] } : m));
      }
      queue = queue.filter((r) => !started.some((s) => s.id === r.id));
    }
    expect(started.map((s) => s.id)).toEqual(['head']);
    expect(started[0]!.start).toBe(at(60));
  });

  it('lets short requests backfill the gap before the head, ending before it starts', () => {
    const queue = [request('head', 6, 60), request('long', 1, 90), request('short', 1, 30), request('also-short', 2, 60)];
    const { placements, machines } = planQueue(pool(), queue, { now: NOW, horizon: WEEK });
    expect(minutesOf(placements.get('head'))).toBe(60);
    expect(placements.get('short')).toEqual({ start: NOW, machineIds: ['id-m1'] });
    expect(placements.get('also-short')).toEqual({ start: NOW, machineIds: ['id-m2', 'id-m3'] });
    expect(minutesOf(placements.get('long'))).toBe(120);
    // The plan's windows are in the copies it returns, sorted; the input is untouched.
    expect(machines.find((m) => m.name === 'm1')!.busy).toEqual([
      { start: at(0), end: at(30) },
      { start: at(60), end: at(120) },
      { start: at(120), end: at(210) },
    ]);
    expect(pool()[0]!.busy).toEqual([]);
  });

  it('places requests around bookings', () => {
    // m1 is booked at 30-90: a 60-minute request goes to m2 (free now), the next waits for m1's booking to end.
    const machines = [machine('m1', [[30, 90]]), machine('m2')];
    const { placements } = planQueue(machines, [request('a', 1, 60), request('b', 1, 60), request('c', 1, 20)], { now: NOW, horizon: WEEK });
    expect(placements.get('a')).toEqual({ start: NOW, machineIds: ['id-m2'] });
    expect(placements.get('b')).toEqual({ start: at(60), machineIds: ['id-m2'] });
    expect(placements.get('c')).toEqual({ start: NOW, machineIds: ['id-m1'] });
  });

  it('gives null to a request needing more machines than exist, and plans the rest', () => {
    const { placements } = planQueue(pool(), [request('huge', 7, 10), request('fits', 6, 10)], { now: NOW, horizon: WEEK });
    expect(placements.get('huge')).toBeNull();
    expect(minutesOf(placements.get('fits'))).toBe(60);
  });
});

/** A small seeded generator (mulberry32): the same random pools on every run. */
function seeded(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)), pick: <T>(xs: T[]) => xs[Math.floor(next() * xs.length)]! };
}

/** A pool as readPool gives one: disjoint windows per machine; one not free now has a window covering now. */
function randomPool(rnd: ReturnType<typeof seeded>): PlanMachine[] {
  return Array.from({ length: rnd.int(1, 9) }, (_, i) => {
    const busy: [number, number][] = [];
    let t = rnd.int(-30, 60);
    for (let n = rnd.int(0, 6); n > 0; n--) {
      const start = t;
      const end = start + rnd.int(1, 120);
      if (end > 0) busy.push([Math.max(0, start), end]);
      t = end + rnd.int(0, 90);
    }
    const inPool = rnd.next() > 0.1;
    return machine(`m${String.fromCharCode(97 + ((i * 7) % 26))}${i}`, busy, {
      type: rnd.pick(['server', 'gpu']),
      tags: rnd.next() > 0.5 ? { rack: rnd.pick(['r1', 'r2']) } : {},
      inPool,
      ...(!inPool && { freeNow: false }),
    });
  });
}

function randomRequest(rnd: ReturnType<typeof seeded>, id: string, pool: PlanMachine[]): PlanRequest {
  const more: Partial<PlanRequest> = {};
  if (rnd.next() < 0.3) more.type = rnd.pick(['server', 'gpu']);
  if (rnd.next() < 0.3) more.tags = { rack: rnd.pick(['r1', 'r2']) };
  if (rnd.next() < 0.15) more.names = [...new Set([rnd.pick(pool).name, rnd.pick(pool).name])];
  return request(id, more.names?.length ?? rnd.int(1, 4), rnd.int(1, 180), more);
}

const overlaps = (a: Window, b: Window) => a.start < b.end && b.start < a.end;
const matchesPlain = (m: PlanMachine, r: PlanRequest) =>
  (!r.names || r.names.includes(m.name)) && (r.type === undefined || m.type === r.type) && Object.entries(r.tags ?? {}).every(([k, v]) => m.tags[k] === v);

/** Every candidate start in order, every machine checked against every window: slow and plainly right. */
function earliestByHand(machines: PlanMachine[], req: PlanRequest, now: number, horizon: number): Placement | null {
  const matching = machines.filter((m) => m.inPool && matchesPlain(m, req)).sort((a, b) => (a.name < b.name ? -1 : 1));
  const starts = [...new Set([now, ...matching.flatMap((m) => m.busy.map((w) => w.end)).filter((t) => t >= now)])].sort((a, b) => a - b);
  for (const start of starts) {
    if (start > horizon) break;
    const span = { start, end: start + req.durationMs };
    const free = matching.filter((m) => (start !== now || m.freeNow) && m.busy.every((w) => !overlaps(w, span)));
    if (free.length >= (req.names?.length ?? req.count)) return { start, machineIds: free.slice(0, req.names?.length ?? req.count).map((m) => m.id) };
  }
  return null;
}

describe('on random pools (seeded)', () => {
  it('finds the same earliest placement as trying every candidate start', () => {
    const rnd = seeded(20);
    for (let round = 0; round < 500; round++) {
      const pool = randomPool(rnd);
      const req = randomRequest(rnd, 'r', pool);
      const horizon = at(rnd.int(0, 600));
      expect(earliestPlacement(pool, req, { now: NOW, from: NOW, horizon }), `round ${round}`).toEqual(earliestByHand(pool, req, NOW, horizon));
    }
  });

  it('never gives a machine two overlapping windows, and places each request as asked', () => {
    const rnd = seeded(2026);
    for (let round = 0; round < 300; round++) {
      const pool = randomPool(rnd);
      const queue = Array.from({ length: rnd.int(1, 25) }, (_, i) => randomRequest(rnd, `q${i}`, pool));
      const { placements, machines } = planQueue(pool, queue, { now: NOW, horizon: at(24 * 60) });
      for (const m of machines) {
        for (let i = 1; i < m.busy.length; i++) expect(m.busy[i]!.start, `round ${round}: ${m.name} sorted`).toBeGreaterThanOrEqual(m.busy[i - 1]!.start);
      }
      const byId = new Map(pool.map((m) => [m.id, m]));
      const planned = new Map<string, Window[]>();
      for (const req of queue) {
        const p = placements.get(req.id);
        if (!p) continue;
        const span = { start: p.start, end: p.start + req.durationMs };
        expect(p.machineIds, `round ${round}: ${req.id}`).toHaveLength(req.names?.length ?? req.count);
        for (const id of p.machineIds) {
          const m = byId.get(id)!;
          expect(m.inPool && matchesPlain(m, req), `round ${round}: ${req.id} on ${m.name}`).toBe(true);
          if (p.start === NOW) expect(m.freeNow, `round ${round}: ${req.id} now on ${m.name}`).toBe(true);
          const taken = [...m.busy, ...(planned.get(id) ?? [])];
          expect(taken.filter((w) => overlaps(w, span)), `round ${round}: ${req.id} on ${m.name}`).toEqual([]);
          planned.set(id, [...(planned.get(id) ?? []), span]);
        }
      }
    }
  });

  it('plans 200 queued requests on 100 machines with hundreds of windows in tens of milliseconds', () => {
    const rnd = seeded(7);
    const pool = Array.from({ length: 100 }, (_, i) => {
      const busy: [number, number][] = [];
      let t = rnd.int(0, 60);
      for (let n = 0; n < 300; n++) {
        const end = t + rnd.int(10, 120);
        busy.push([t, end]);
        t = end + rnd.int(0, 30);
      }
      return machine(`m${String(i).padStart(3, '0')}`, busy, { tags: { rack: `r${i % 4}` } });
    });
    const queue = Array.from({ length: 200 }, (_, i) => request(`q${i}`, rnd.int(1, 8), rnd.int(10, 240), i % 3 === 0 ? { tags: { rack: `r${i % 4}` } } : {}));
    planQueue(pool, queue, { now: NOW, horizon: WEEK * 4 }); // warm up the JIT
    const started = performance.now();
    const { placements } = planQueue(pool, queue, { now: NOW, horizon: WEEK * 4 });
    const ms = performance.now() - started;
    expect([...placements.values()].filter(Boolean).length).toBe(200);
    // About 30 ms here; trying every candidate start on every machine takes seconds. The
    // margin is for a busy machine.
    expect(ms, `planned in ${ms.toFixed(1)} ms`).toBeLessThan(200);
  });
});
