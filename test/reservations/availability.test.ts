// What is booked when, read from the database as the scheduler reads it (windows.ts), and
// shown by GET /v1/machines/{name}/schedule and GET /v1/pool/availability: a live
// reservation holds its machines from now to its end, a releasing one for a moment, a
// booking from its start to its end; machines out of the pool are never free; who holds a
// window is for its owner and admins. The rows are written directly: how they come to be
// (allocation, the queue, bookings) is other tests' business.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RELEASE_ALLOWANCE_MS, readPool, readQueue } from '../../src/modules/reservations/windows.js';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

let t: TestApp;
let admin: Session;
let alice: Session;
let bob: Session;
/** One moment the rows are written around (a whole second, as far from any edge as a test runs). */
const base = Math.ceil(Date.now() / 1000) * 1000;
const ids: Record<string, string> = {};

async function addMachine(name: string, more: { type?: string; tags?: Record<string, string>; status?: 'available' | 'reserved' | 'maintenance'; reservationId?: string } = {}) {
  const m = await t.prisma.machine.create({
    data: {
      name,
      host: '127.0.0.1',
      port: 1,
      username: 'root',
      credentialKind: 'password',
      credential: Buffer.from('unused'),
      type: more.type ?? 'server',
      tags: more.tags ?? {},
      status: more.status ?? 'available',
      reservationId: more.reservationId ?? null,
    },
  });
  ids[name] = m.id;
  return m.id;
}

async function addReservation(
  owner: Session,
  machineNames: string[],
  row: { status: 'queued' | 'scheduled' | 'provisioning' | 'active' | 'releasing' | 'released'; durationMinutes: number; startAt?: number; expiresAt?: number; request?: object; createdAt?: number },
) {
  const r = await t.prisma.reservation.create({
    data: {
      userId: owner.userId,
      ownerUsername: owner.username,
      status: row.status,
      accountUsername: owner.username,
      durationMinutes: row.durationMinutes,
      machineCount: row.request ? 0 : machineNames.length,
      ...(row.request && { request: row.request }),
      ...(row.startAt !== undefined && { startAt: new Date(row.startAt) }),
      ...(row.expiresAt !== undefined && { expiresAt: new Date(row.expiresAt) }),
      ...(row.createdAt !== undefined && { createdAt: new Date(row.createdAt) }),
      maxExpiresAt: new Date(base + 30 * DAY),
      machines: { create: machineNames.map((name) => ({ machineId: ids[name]! })) },
    },
  });
  return r.id;
}

let live: string;
let booking: string;
let releasing: string;
let overdue: string;
beforeAll(async () => {
  // The reservation job stays away from these hand-written rows.
  t = await createTestApp({ BERTH_EXPIRY_INTERVAL_SECONDS: '3600' });
  admin = await adminSession(t);
  alice = await userSession(t, 'alice');
  bob = await userSession(t, 'bob');

  await addMachine('gpu-1', { type: 'gpu', tags: { gpu: 'a100' }, status: 'reserved' });
  await addMachine('gpu-2', { type: 'gpu', tags: { gpu: 'a100' } });
  await addMachine('gpu-3', { type: 'gpu', tags: { gpu: 'h100' }, status: 'maintenance' });
  await addMachine('srv-1', { status: 'reserved' });
  await addMachine('srv-2', { status: 'reserved' });
  await addMachine('srv-3');
  await addMachine('late-1', { type: 'late', status: 'reserved' });

  // alice uses gpu-1 for two more hours; bob has booked gpu-2 for tomorrow 4 h.
  live = await addReservation(alice, ['gpu-1'], { status: 'active', durationMinutes: 180, expiresAt: base + 2 * HOUR });
  booking = await addReservation(bob, ['gpu-2'], { status: 'scheduled', durationMinutes: 240, startAt: base + DAY, expiresAt: base + DAY + 4 * HOUR });
  // srv-1 is being released; srv-2 is reserved by a reservation that has ended (its cleanup is due).
  releasing = await addReservation(alice, ['srv-1'], { status: 'releasing', durationMinutes: 60, expiresAt: base - MIN });
  const ended = await addReservation(bob, ['srv-2', 'srv-3'], { status: 'released', durationMinutes: 60, expiresAt: base - HOUR });
  await t.prisma.machine.update({ where: { name: 'srv-2' }, data: { reservationId: ended } });
  await t.prisma.machine.update({ where: { name: 'gpu-1' }, data: { reservationId: live } });
  await t.prisma.machine.update({ where: { name: 'srv-1' }, data: { reservationId: releasing } });
  // late-1's reservation has run out; the reservation job has not released it yet.
  overdue = await addReservation(alice, ['late-1'], { status: 'active', durationMinutes: 60, expiresAt: base - MIN });
  await t.prisma.machine.update({ where: { name: 'late-1' }, data: { reservationId: overdue } });
  // A booking beyond the range read, and two queued requests (the later one written first).
  await addReservation(bob, ['srv-3'], { status: 'scheduled', durationMinutes: 60, startAt: base + 20 * DAY, expiresAt: base + 20 * DAY + HOUR });
  await addReservation(bob, [], { status: 'queued', durationMinutes: 30, request: { machines: ['srv-3', 'gpu-2'] }, createdAt: base - MIN });
  await addReservation(alice, [], { status: 'queued', durationMinutes: 90, request: { count: 2, type: 'gpu', tags: { gpu: 'a100' } }, createdAt: base - 2 * MIN });
});
afterAll(() => t.close());

describe('readPool and readQueue', () => {
  const now = base;
  const until = base + 7 * DAY;

  it('read each machine with the windows that hold it, from the plain reads and inside a transaction alike', async () => {
    const plain = await readPool(t.prisma, { now, until });
    const inTransaction = await t.prisma.$transaction((tx) => readPool(tx, { now, until }));
    expect(inTransaction).toEqual(plain);

    const byName = Object.fromEntries(plain.map((m) => [m.name, m]));
    expect(plain.map((m) => m.name)).toEqual(['gpu-1', 'gpu-2', 'gpu-3', 'late-1', 'srv-1', 'srv-2', 'srv-3']);
    expect(byName['gpu-1']).toMatchObject({ type: 'gpu', tags: { gpu: 'a100' }, status: 'reserved', inPool: true, freeNow: false });
    expect(byName['gpu-1']!.busy).toEqual([{ start: now, end: base + 2 * HOUR, status: 'active', reservationId: live, userId: alice.userId, owner: 'alice' }]);
    expect(byName['gpu-2']).toMatchObject({ inPool: true, freeNow: true });
    expect(byName['gpu-2']!.busy).toEqual([
      { start: base + DAY, end: base + DAY + 4 * HOUR, status: 'scheduled', reservationId: booking, userId: bob.userId, owner: 'bob' },
    ]);
    expect(byName['gpu-3']).toMatchObject({ status: 'maintenance', inPool: false, freeNow: false, busy: [] });
    expect(byName['srv-1']!.busy).toEqual([
      { start: now, end: now + DEFAULT_RELEASE_ALLOWANCE_MS, status: 'releasing', reservationId: releasing, userId: alice.userId, owner: 'alice' },
    ]);
    // Held by a reservation that has ended: busy for the allowance, and by nobody anyone may name.
    expect(byName['srv-2']).toMatchObject({ inPool: true, freeNow: false });
    expect(byName['srv-2']!.busy).toEqual([{ start: now, end: now + DEFAULT_RELEASE_ALLOWANCE_MS, status: 'releasing', reservationId: null, userId: null, owner: null }]);
    expect(byName['late-1']!.busy).toEqual([
      { start: now, end: now + DEFAULT_RELEASE_ALLOWANCE_MS, status: 'active', reservationId: overdue, userId: alice.userId, owner: 'alice' },
    ]);
    // A released reservation holds nothing; a booking after `until` is not read.
    expect(byName['srv-3']).toMatchObject({ freeNow: true, busy: [] });
    const later = await readPool(t.prisma, { now, until: base + 21 * DAY, names: ['srv-3'], releaseAllowanceMs: 5000 });
    expect(later.map((m) => [m.name, m.busy.map((w) => w.start)])).toEqual([['srv-3', [base + 20 * DAY]]]);
  });

  it('reads the queue in arrival order, with what each request asked for', async () => {
    const queue = await readQueue(t.prisma);
    expect(queue).toEqual([
      { id: expect.any(String), count: 2, type: 'gpu', tags: { gpu: 'a100' }, durationMs: 90 * MIN },
      { id: expect.any(String), count: 2, names: ['srv-3', 'gpu-2'], durationMs: 30 * MIN },
    ]);
    expect(await t.prisma.$transaction((tx) => readQueue(tx))).toEqual(queue);
  });
});

const get = (url: string, who?: Session) => t.app.inject({ method: 'GET', url, ...(who && { headers: who.auth }) });
const iso = (ms: number) => new Date(ms).toISOString();

describe('GET /v1/machines/{name}/schedule', () => {
  it('shows a booking and a live reservation, and whose they are only to the owner and admins', async () => {
    const range = `from=${iso(base)}&to=${iso(base + 2 * DAY)}`;
    const asBob = json(await get(`/v1/machines/gpu-2/schedule?${range}`, bob));
    expect(asBob.machine).toBe('gpu-2');
    expect(asBob.windows).toEqual([{ start: iso(base + DAY), end: iso(base + DAY + 4 * HOUR), status: 'scheduled', reservation_id: booking, owner: 'bob' }]);
    const asAlice = json(await get(`/v1/machines/gpu-2/schedule?${range}`, alice));
    expect(asAlice.windows).toEqual([{ start: iso(base + DAY), end: iso(base + DAY + 4 * HOUR), status: 'scheduled', reservation_id: null, owner: null }]);
    expect(JSON.stringify(asAlice)).not.toContain('bob');
    const asAdmin = json(await get(`/v1/machines/gpu-2/schedule?${range}`, admin));
    expect(asAdmin.windows[0]).toMatchObject({ reservation_id: booking, owner: 'bob' });

    const active = json(await get('/v1/machines/gpu-1/schedule', alice));
    expect(active.windows).toEqual([{ start: expect.any(String), end: iso(base + 2 * HOUR), status: 'active', reservation_id: live, owner: 'alice' }]);
    expect(Date.parse(active.windows[0].start)).toBeGreaterThanOrEqual(base);
    expect(json(await get('/v1/machines/gpu-1/schedule', bob)).windows[0]).toMatchObject({ status: 'active', reservation_id: null, owner: null });
  });

  it('defaults to a week from now, and shows only what reaches into the range', async () => {
    const before = Date.now();
    const week = json(await get('/v1/machines/gpu-2/schedule', bob));
    expect(Date.parse(week.from)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(week.to) - Date.parse(week.from)).toBe(7 * DAY);
    expect(week.windows).toHaveLength(1);
    // Before the booking, and after it: nothing; a range cutting through it: the whole booking.
    expect(json(await get(`/v1/machines/gpu-2/schedule?to=${iso(base + DAY)}`, bob)).windows).toEqual([]);
    expect(json(await get(`/v1/machines/gpu-2/schedule?from=${iso(base + DAY + 4 * HOUR)}`, bob)).windows).toEqual([]);
    const through = json(await get(`/v1/machines/gpu-2/schedule?from=${iso(base + DAY + HOUR)}&to=${iso(base + DAY + 2 * HOUR)}`, bob));
    expect(through.windows).toMatchObject([{ start: iso(base + DAY), end: iso(base + DAY + 4 * HOUR) }]);
    // The past is not shown: an earlier from is now.
    const past = json(await get(`/v1/machines/gpu-2/schedule?from=${iso(base - DAY)}`, bob));
    expect(Date.parse(past.from)).toBeGreaterThanOrEqual(before);
  });

  it('answers 404 for a machine that does not exist, 401 to anonymous', async () => {
    const res = await get('/v1/machines/nope/schedule', alice);
    expect(res.statusCode).toBe(404);
    expect(json(res).code).toBe('machine_not_found');
    expect((await get('/v1/machines/gpu-1/schedule')).statusCode).toBe(401);
  });
});

describe('GET /v1/pool/availability', () => {
  it('gives the windows of the matching machines and how many are free when', async () => {
    const from = base + 3 * HOUR;
    const to = base + 2 * DAY;
    const res = json(await get(`/v1/pool/availability?type=gpu&from=${iso(from)}&to=${iso(to)}`, alice));
    expect(res).toMatchObject({ from: iso(from), to: iso(to) });
    expect(res.machines).toEqual([
      { name: 'gpu-1', type: 'gpu', status: 'reserved', windows: [] },
      { name: 'gpu-2', type: 'gpu', status: 'available', windows: [{ start: iso(base + DAY), end: iso(base + DAY + 4 * HOUR), status: 'scheduled' }] },
      { name: 'gpu-3', type: 'gpu', status: 'maintenance', windows: [] },
    ]);
    // gpu-3 is in maintenance: never free. gpu-1 is free once alice's reservation has ended.
    expect(res.free).toEqual([
      { start: iso(from), end: iso(base + DAY), count: 2 },
      { start: iso(base + DAY), end: iso(base + DAY + 4 * HOUR), count: 1 },
      { start: iso(base + DAY + 4 * HOUR), end: iso(to), count: 2 },
    ]);
    expect(JSON.stringify(res)).not.toContain('bob');
  });

  it('counts a live reservation from now to its end, and filters by tags (key:value, repeatable)', async () => {
    const res = json(await get(`/v1/pool/availability?tags=gpu:a100&to=${iso(base + 3 * HOUR)}`, bob));
    expect(res.machines.map((m: { name: string }) => m.name)).toEqual(['gpu-1', 'gpu-2']);
    expect(res.machines[0].windows).toEqual([{ start: expect.any(String), end: iso(base + 2 * HOUR), status: 'active' }]);
    expect(res.free).toEqual([
      { start: res.from, end: iso(base + 2 * HOUR), count: 1 },
      { start: iso(base + 2 * HOUR), end: iso(base + 3 * HOUR), count: 2 },
    ]);
    const both = json(await get('/v1/pool/availability?tags=gpu:a100&tags=gpu:h100', bob));
    expect(both.machines).toEqual([]);
    expect(both.free).toEqual([{ start: both.from, end: both.to, count: 0 }]);
    const none = json(await get('/v1/pool/availability?type=nothing', bob));
    expect(none).toMatchObject({ machines: [], free: [{ count: 0 }] });
  });

  it('shows releasing machines and ones freed after a crash as busy for a moment', async () => {
    const res = json(await get('/v1/pool/availability?type=server', admin));
    expect(res.machines.map((m: any) => [m.name, m.windows.map((w: any) => w.status)])).toEqual([
      ['srv-1', ['releasing']],
      ['srv-2', ['releasing']],
      ['srv-3', []],
    ]);
    expect(res.free[0].count).toBe(1);
    expect(res.free.at(-1)).toMatchObject({ count: 3, end: res.to });
  });

  it('refuses ranges that end before they start, in the past, or longer than 31 days, and malformed moments and filters (400)', async () => {
    const badRanges = [
      `from=${iso(base + 2 * DAY)}&to=${iso(base + DAY)}`,
      `from=${iso(base + DAY)}&to=${iso(base + DAY)}`,
      `to=${iso(base - DAY)}`,
      `from=${iso(base + DAY)}&to=${iso(base + 33 * DAY)}`,
      `to=${iso(base + 40 * DAY)}`,
      'from=tomorrow',
      'to=2026-13-01T00:00:00Z',
    ];
    for (const url of [
      ...badRanges.flatMap((query) => [`/v1/pool/availability?${query}`, `/v1/machines/gpu-1/schedule?${query}`]),
      '/v1/pool/availability?tags=gpu',
      `/v1/pool/availability?type=${'x'.repeat(40)}`,
      `/v1/pool/availability?${Array.from({ length: 17 }, (_, i) => `tags=k${i}:v`).join('&')}`,
    ]) {
      const res = await get(url, alice);
      expect(res.statusCode, url).toBe(400);
      expect(json(res).code, url).toBe('validation_failed');
    }
    // 31 days exactly, and an offset instead of Z, are fine.
    const month = json(await get(`/v1/pool/availability?from=${iso(base + DAY)}&to=${iso(base + 32 * DAY)}`, alice));
    expect(Date.parse(month.to) - Date.parse(month.from)).toBe(31 * DAY);
    const offset = await get(`/v1/pool/availability?from=${encodeURIComponent('2030-01-01T10:00:00+02:00')}&to=${encodeURIComponent('2030-01-02T10:00:00+02:00')}`, alice);
    expect(offset.statusCode).toBe(200);
    expect(json(offset).from).toBe('2030-01-01T08:00:00.000Z');
  });

  it('is for signed-in users', async () => {
    expect((await get('/v1/pool/availability')).statusCode).toBe(401);
  });
});
