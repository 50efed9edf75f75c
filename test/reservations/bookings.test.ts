// Bookings on real sshd machines: a booking is planned on concrete machines for its window
// (201 `scheduled`), blocks an overlapping immediate request and an extension into it,
// activates on time with working accounts (and across a restart of berth), is re-planned
// when an admin forces its machine out of the pool, or fails when nothing can replace it;
// the owner cancels it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, json, login, userSession, type Session, type TestApp } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { sshRun } from '../helpers/ssh-machines.js';
import { generateSshKeyPair } from '../../src/infra/ssh.js';

let pool: Pool;
let alice: Session;
let bob: Session;
let carol: Session;
const key = generateSshKeyPair();
const FAST = { BERTH_SCHEDULER_INTERVAL_SECONDS: '1', BERTH_EXPIRY_INTERVAL_SECONDS: '1' };

beforeAll(async () => {
  pool = await createPool(4, FAST, 'book');
  [alice, bob, carol] = [await userSession(pool.t, 'alice'), await userSession(pool.t, 'bob'), await userSession(pool.t, 'carol')];
});
afterAll(() => pool.close());

const reserve = (s: Session, payload: object, t: TestApp = pool.t) => t.app.inject({ method: 'POST', url: '/v1/reservations', headers: s.auth, payload });
const read = async (s: Session, id: string, t: TestApp = pool.t) => json(await t.app.inject({ method: 'GET', url: `/v1/reservations/${id}`, headers: s.auth }));
const cancel = (s: Session, id: string) => pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: s.auth });
const inSeconds = (s: number) => new Date(Date.now() + s * 1000).toISOString();
/** The test machines' names (random suffixes), by index. */
const nameOf = (i: number) => pool.machines[i]!.name;

describe('bookings', () => {
  it('are planned on concrete machines, refuse what overlaps them, and say when it could start', async () => {
    const start = inSeconds(3600);
    const booked = await reserve(bob, { machines: [nameOf(0)], start_at: start, duration_minutes: 60, ssh_public_key: key.public });
    expect(booked.statusCode, booked.body).toBe(201);
    const b = json(booked);
    expect(b).toMatchObject({ status: 'scheduled', start_at: start, machines: [{ name: nameOf(0) }] });
    expect(Date.parse(b.expires_at) - Date.parse(b.start_at)).toBe(60 * 60_000);

    // An overlapping booking of the same machine: refused, with when it could start (the first booking's end).
    const clash = await reserve(carol, { machines: [nameOf(0)], start_at: inSeconds(3600 + 1800), duration_minutes: 60 });
    expect(clash.statusCode).toBe(409);
    expect(json(clash)).toMatchObject({ code: 'insufficient_capacity', earliest_start: b.expires_at });

    // An immediate request that would run into the booking: refused, with the earliest start after it.
    const now = await reserve(carol, { machines: [nameOf(0)], duration_minutes: 90 });
    expect(now.statusCode).toBe(409);
    expect(json(now).earliest_start).toBe(b.expires_at);
    // One that ends before the booking starts is fine, and cannot be extended into it.
    const before = await reserve(carol, { machines: [nameOf(0)], duration_minutes: 30, ssh_public_key: key.public });
    expect(before.statusCode, before.body).toBe(201);
    const c = json(before);
    const extend = await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${c.id}/extend`, headers: carol.auth, payload: { minutes: 45 } });
    expect(extend.statusCode).toBe(409);
    expect(json(extend)).toMatchObject({ code: 'booking_conflict', latest_end: b.start_at });
    // Up to the booking is fine.
    const upTo = await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${c.id}/extend`, headers: carol.auth, payload: { minutes: 20 } });
    expect(upTo.statusCode, upTo.body).toBe(200);

    // Bookings are bounded in time.
    expect((await reserve(bob, { count: 1, start_at: inSeconds(-60) })).statusCode).toBe(422);
    expect(json(await reserve(bob, { count: 1, start_at: inSeconds(40 * 24 * 3600) })).code).toBe('beyond_booking_horizon');

    // The owner cancels; another user cannot see it.
    expect((await cancel(carol, b.id)).statusCode).toBe(404);
    expect(json(await cancel(bob, b.id))).toMatchObject({ status: 'released', release_reason: 'cancelled' });
    expect(json(await cancel(carol, c.id)).status).toBe('released');
  });

  it('activates on time with working accounts, for the booked window', { timeout: 120_000 }, async () => {
    const start = inSeconds(10);
    const b = json(await reserve(bob, { machines: [nameOf(1), nameOf(2)], start_at: start, duration_minutes: 5, ssh_public_key: key.public }));
    expect(b.status).toBe('scheduled');
    // Held by nobody until then: the machines are still available now.
    const machine = json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${nameOf(1)}`, headers: pool.admin.auth }));
    expect(machine.status).toBe('available');
    await expect.poll(async () => (await read(bob, b.id)).status, { timeout: 60_000, interval: 250 }).toBe('active');
    const active = await read(bob, b.id);
    expect(Date.parse(active.activated_at)).toBeGreaterThanOrEqual(Date.parse(b.start_at));
    expect(active.expires_at).toBe(b.expires_at);
    for (const { host, port } of active.machines) {
      expect((await sshRun({ host, port, username: 'bob', privateKey: key.private }, 'id -un')).stdout.trim()).toBe('bob');
    }
    expect(json(await cancel(bob, b.id)).status).toBe('released');
  });

  it('an admin taking a booked machine away is told which bookings it breaks; forced, the booking moves or fails', { timeout: 120_000 }, async () => {
    const byCount = json(await reserve(alice, { count: 1, start_at: inSeconds(7200), duration_minutes: 60 }));
    const named = json(await reserve(carol, { machines: [byCount.machines[0].name], start_at: inSeconds(7200 + 3600), duration_minutes: 30 }));
    const target = byCount.machines[0].name;
    const refused = await pool.t.app.inject({ method: 'PUT', url: `/v1/machines/${target}/maintenance`, headers: pool.admin.auth, payload: { reason: 'disk' } });
    expect(refused.statusCode).toBe(409);
    expect(json(refused)).toMatchObject({ code: 'machine_booked' });
    expect(json(refused).bookings.map((x: { reservation_id: string }) => x.reservation_id).sort()).toEqual([byCount.id, named.id].sort());
    const forced = await pool.t.app.inject({ method: 'PUT', url: `/v1/machines/${target}/maintenance?force=true`, headers: pool.admin.auth, payload: { reason: 'disk' } });
    expect(forced.statusCode, forced.body).toBe(200);
    // The count booking moves to another machine; the booking that named the machine fails, saying why.
    await expect.poll(async () => (await read(alice, byCount.id)).machines.map((m: { name: string }) => m.name), { timeout: 30_000, interval: 250 }).not.toContain(target);
    const moved = await read(alice, byCount.id);
    expect(moved).toMatchObject({ status: 'scheduled', start_at: byCount.start_at });
    expect(moved.machines).toHaveLength(1);
    await expect.poll(async () => (await read(carol, named.id)).status, { timeout: 30_000, interval: 250 }).toBe('failed');
    expect((await read(carol, named.id)).failure_reason).toMatch(/booked machine left the pool/);
    await pool.t.app.inject({ method: 'DELETE', url: `/v1/machines/${target}/maintenance`, headers: pool.admin.auth });
    await cancel(alice, byCount.id);
  });

  it('stays on a machine that berth itself keeps out of the pool for a while between reservations (a reinstall after sudo)', { timeout: 120_000 }, async () => {
    const machine = nameOf(2);
    await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${machine}`, headers: pool.admin.auth, payload: { allow_sudo: true } });
    // carol books the machine by name for later; alice has it with sudo until before then.
    const booked = json(await reserve(carol, { machines: [machine], start_at: inSeconds(3 * 3600), duration_minutes: 30 }));
    const held = json(await reserve(alice, { machines: [machine], duration_minutes: 30, ssh_public_key: key.public }));
    expect(held.status).toBe('active');
    await cancel(alice, held.id);
    // Released after sudo: it waits for its reinstall, out of the pool.
    expect(json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${machine}`, headers: pool.admin.auth })).status).toBe('needs_reprovision');
    await pool.t.app.jobs.runNow('scheduler');
    // The booking (which named the machine: it has no substitute) is untouched.
    expect(await read(carol, booked.id)).toMatchObject({ status: 'scheduled', machines: [{ name: machine }] });
    await pool.t.app.inject({ method: 'POST', url: `/v1/machines/${machine}/reprovisioned`, headers: pool.admin.auth });
    await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${machine}`, headers: pool.admin.auth, payload: { allow_sudo: false } });
    expect(json(await cancel(carol, booked.id)).status).toBe('released');
  });

  it('a booking whose start passes while berth is down activates when berth is back', { timeout: 120_000 }, async () => {
    const b = json(await reserve(bob, { machines: [nameOf(3)], start_at: inSeconds(8), duration_minutes: 5, ssh_public_key: key.public }));
    expect(b.status).toBe('scheduled');
    // berth stops before the start, and comes back (on the same database and keys) after it.
    await pool.t.app.close();
    // Not vacuous: it had not started when berth stopped.
    expect((await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: b.id } })).status).toBe('scheduled');
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(b.start_at) - Date.now()) + 1000));
    const second = await createTestApp(FAST, { shareWith: pool.t });
    try {
      const bobThere = await login(second.app, 'bob');
      await expect.poll(async () => (await read(bobThere, b.id, second)).status, { timeout: 60_000, interval: 250 }).toBe('active');
      expect((await sshRun({ host: pool.machines[3]!.host, port: pool.machines[3]!.port, username: 'bob', privateKey: key.private }, 'id -un')).stdout.trim()).toBe('bob');
    } finally {
      await second.close();
    }
  });
});
