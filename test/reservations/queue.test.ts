// The queue on real sshd machines: a request that cannot start now waits (202 `queued`) and
// becomes active as soon as it can, with a working login; requests are served in arrival
// order, a later one starting first only where that delays no earlier one (conservative
// backfill): a 4-machine request at the head is not starved by 1-machine requests, which
// still fill the gaps it leaves; a wait runs out; a queued request is cancelled; what a
// refused request could have had is said (`earliest_start`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, userSession, type Session } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';
import { sshRun } from '../helpers/ssh-machines.js';
import { generateSshKeyPair } from '../../src/infra/ssh.js';

let pool: Pool;
const users: Record<string, Session> = {};
const key = generateSshKeyPair();

beforeAll(async () => {
  pool = await createPool(4, { BERTH_SCHEDULER_INTERVAL_SECONDS: '1', BERTH_EXPIRY_INTERVAL_SECONDS: '1' }, 'queue');
  for (const name of ['ann', 'ben', 'cat', 'dan', 'eve']) users[name] = await userSession(pool.t, name);
});
afterAll(() => pool.close());

const reserve = (s: Session, payload: object) => pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: s.auth, payload });
const read = async (s: Session, id: string) => json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${id}`, headers: s.auth }));
const release = async (s: Session, id: string) => {
  const r = await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: s.auth });
  expect(r.statusCode, r.body).toBe(200);
  return json(r);
};
/** Waits until the reservation is in `status` (the scheduler works in the background). */
const until = async (s: Session, id: string, status: string) => {
  await expect.poll(async () => (await read(s, id)).status, { timeout: 60_000, interval: 250 }).toBe(status);
  return read(s, id);
};
const minutesFrom = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 60_000;

describe('a fair queue', () => {
  it('serves in arrival order, backfills gaps that delay nobody, and never starves the big request at the head', { timeout: 240_000 }, async () => {
    const { ann, ben, cat, dan, eve } = users as Record<string, Session>;
    // ann holds three machines for an hour: one is free.
    const held = await reserve(ann!, { count: 3, duration_minutes: 60, ssh_public_key: key.public });
    expect(held.statusCode, held.body).toBe(201);
    const annRes = json(held);

    // ben wants all four, within the hour: he waits at the head of the queue, expected when ann's hour ends.
    const big = await reserve(ben!, { count: 4, duration_minutes: 30, wait_minutes: 120, ssh_public_key: key.public });
    expect(big.statusCode, big.body).toBe(202);
    const benRes = json(big);
    expect(benRes).toMatchObject({ status: 'queued', queue_position: 1, machines: [], activated_at: null });
    expect(Math.abs(Date.parse(benRes.estimated_start) - Date.parse(annRes.expires_at))).toBeLessThan(1000);

    // cat wants one machine for 30 minutes: it fits on the free machine before ben's start — backfilled, now.
    const gap = await reserve(cat!, { count: 1, duration_minutes: 30, wait_minutes: 60, ssh_public_key: key.public });
    expect(gap.statusCode, gap.body).toBe(201);
    const catRes = json(gap);
    expect(catRes.status).toBe('active');

    // dan wants one machine for 90 minutes: now it would hold a machine past ben's start, so he waits behind ben.
    const long = await reserve(dan!, { count: 1, duration_minutes: 90, wait_minutes: 240, ssh_public_key: key.public });
    expect(long.statusCode, long.body).toBe(202);
    const danRes = json(long);
    expect(danRes).toMatchObject({ status: 'queued', queue_position: 2 });
    expect(Date.parse(danRes.estimated_start)).toBeGreaterThanOrEqual(Date.parse(benRes.estimated_start) + 30 * 60_000 - 1000);

    // eve asks the same without waiting: refused, told when it could start (after ben's window, as dan).
    const refused = await reserve(eve!, { count: 1, duration_minutes: 90 });
    expect(refused.statusCode).toBe(409);
    expect(json(refused)).toMatchObject({ code: 'insufficient_capacity', requested: 1 });
    expect(Date.parse(json(refused).earliest_start)).toBeGreaterThanOrEqual(Date.parse(benRes.estimated_start) + 30 * 60_000 - 1000);

    // ann releases early: three machines are free, but ben needs four (cat holds one); dan's
    // 90 minutes would run into ben's new start (cat's end), so dan still waits: no starvation.
    await release(ann!, annRes.id);
    await expect.poll(async () => (await read(ben!, benRes.id)).estimated_start, { timeout: 30_000, interval: 250 }).toBe(catRes.expires_at);
    expect((await read(dan!, danRes.id)).status).toBe('queued');
    expect((await read(ben!, benRes.id)).status).toBe('queued');

    // cat releases: ben gets all four, and his login works on each.
    await release(cat!, catRes.id);
    const benActive = await until(ben!, benRes.id, 'active');
    expect(benActive.machines).toHaveLength(4);
    expect(benActive.queue_position).toBeNull();
    for (const { host, port } of benActive.machines) {
      const r = await sshRun({ host, port, username: 'ben', privateKey: key.private }, 'id -un');
      expect(r.stdout.trim()).toBe('ben');
    }
    expect((await read(dan!, danRes.id))).toMatchObject({ status: 'queued', queue_position: 1 });

    // ben releases: dan is next.
    await release(ben!, benRes.id);
    const danActive = await until(dan!, danRes.id, 'active');
    expect(danActive.machines).toHaveLength(1);
    expect(minutesFrom(danActive.activated_at, danActive.expires_at)).toBeCloseTo(90, 0);
    await release(dan!, danRes.id);
    for (const m of pool.machines) expect(await accountExists(m, 'dan'), m.name).toBe(false);
  });

  it('a wait that runs out ends the request `released`/`expired`, having held nothing', { timeout: 120_000 }, async () => {
    const { ann, ben } = users as Record<string, Session>;
    const all = json(await reserve(ann!, { count: 4, duration_minutes: 30, ssh_public_key: key.public }));
    expect(all.status).toBe('active');
    const waiting = await reserve(ben!, { count: 1, duration_minutes: 10, wait_minutes: 1 });
    expect(waiting.statusCode).toBe(202);
    const id = json(waiting).id;
    // Its wait is a minute: move it into the past rather than wait for it.
    await pool.t.prisma.reservation.update({ where: { id }, data: { waitUntil: new Date(Date.now() - 1000) } });
    const ended = await until(ben!, id, 'released');
    expect(ended).toMatchObject({ release_reason: 'expired', machines: [], activated_at: null, queue_position: null });
    await release(ann!, all.id);
  });

  it('a queued request is cancelled by its owner; another user cannot see it; a generated password is shown once, after activation', { timeout: 120_000 }, async () => {
    const { ann, ben, cat } = users as Record<string, Session>;
    const all = json(await reserve(ann!, { count: 4, duration_minutes: 30, ssh_public_key: key.public }));
    const first = json(await reserve(ben!, { count: 2, duration_minutes: 10, wait_minutes: 30 }));
    const second = json(await reserve(cat!, { count: 1, duration_minutes: 10, wait_minutes: 30 }));
    expect([first.queue_position, second.queue_position]).toEqual([1, 2]);
    expect(first.account.password).toBeUndefined();
    expect((await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${first.id}`, headers: cat!.auth })).statusCode).toBe(404);
    expect(await release(ben!, first.id)).toMatchObject({ status: 'released', release_reason: 'cancelled' });
    // cat moves up.
    expect((await read(cat!, second.id)).queue_position).toBe(1);

    await release(ann!, all.id);
    const active = await until(cat!, second.id, 'active');
    // The first read once active was the poll's: the password went to it, once. Read again: gone.
    expect(active.account.password).toBeUndefined();
    const stored = await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: second.id } });
    expect(stored.sealedPassword).toBeNull();
    expect(stored.accountSecrets).toBeNull();
    await release(cat!, second.id);
  });

  it('shows the generated password on the owner’s first read after activation, never to an admin’s read', { timeout: 120_000 }, async () => {
    const { ann, eve } = users as Record<string, Session>;
    const all = json(await reserve(ann!, { count: 4, duration_minutes: 30, ssh_public_key: key.public }));
    const queued = json(await reserve(eve!, { count: 1, duration_minutes: 10, wait_minutes: 30 }));
    const stored = await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: queued.id } });
    // Sealed at rest: neither the secrets nor the password are readable in the row.
    expect(stored.sealedPassword).toMatch(/^[A-Za-z0-9+/=]+$/);
    expect(stored.accountSecrets).not.toContain('$6$');
    await release(ann!, all.id);
    // Wait for activation through the database, not a read of eve's (which would take the password).
    await expect.poll(async () => (await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id: queued.id } })).status, { timeout: 60_000, interval: 250 }).toBe('active');
    const byAdmin = json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${queued.id}`, headers: pool.admin.auth }));
    expect(byAdmin.account.password).toBeUndefined();
    const first = await read(eve!, queued.id);
    expect(first.account.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect((await read(eve!, queued.id)).account.password).toBeUndefined();
    // The password works on the machine.
    const [m] = first.machines;
    const login = await sshRun({ host: m.host, port: m.port, username: 'eve', password: first.account.password }, 'id -un');
    expect(login.stdout.trim()).toBe('eve');
    await release(eve!, queued.id);
  });

  it('withdraws a deleted user’s queued requests and bookings', async () => {
    const { ann } = users as Record<string, Session>;
    const gone = await userSession(pool.t, 'gone');
    const all = json(await reserve(ann!, { count: 4, duration_minutes: 30, ssh_public_key: key.public }));
    const queued = json(await reserve(gone, { count: 1, duration_minutes: 10, wait_minutes: 30 }));
    const booked = json(await reserve(gone, { count: 1, duration_minutes: 10, start_at: new Date(Date.now() + 2 * 3600_000).toISOString() }));
    expect([queued.status, booked.status]).toEqual(['queued', 'scheduled']);
    const deleted = await pool.t.app.inject({ method: 'DELETE', url: `/v1/users/${gone.userId}`, headers: pool.admin.auth });
    expect(deleted.statusCode, deleted.body).toBe(204);
    for (const id of [queued.id, booked.id]) {
      expect(await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id } })).toMatchObject({ status: 'released', releaseReason: 'user_deleted', sealedPassword: null, accountSecrets: null });
    }
    await release(ann!, all.id);
  });

  it('an idle scheduler tick decides nothing: the planner row is not written while nothing waits', async () => {
    const decisions = async () => (await pool.t.prisma.plannerLock.findUniqueOrThrow({ where: { id: 1 } })).decisions;
    const before = await decisions();
    await pool.t.app.jobs.runNow('scheduler');
    await pool.t.app.jobs.runNow('scheduler');
    expect(await decisions()).toBe(before);
    // Something waiting: the tick decides (under the row).
    const { ann, ben } = users as Record<string, Session>;
    const all = json(await reserve(ann!, { count: 4, duration_minutes: 30, ssh_public_key: key.public }));
    const waiting = json(await reserve(ben!, { count: 1, duration_minutes: 10, wait_minutes: 30 }));
    const queuedAt = await decisions();
    await pool.t.app.jobs.runNow('scheduler');
    expect(await decisions()).toBeGreaterThan(queuedAt);
    await release(ben!, waiting.id);
    await release(ann!, all.id);
  });

  it('counts queued machines against the per-user limit, and bounds the wait', async () => {
    const { ann } = users as Record<string, Session>;
    const tooLong = await reserve(ann!, { count: 1, wait_minutes: 7 * 24 * 60 + 1 });
    expect(tooLong.statusCode).toBe(400);
    const both = await reserve(ann!, { count: 1, wait_minutes: 5, start_at: new Date(Date.now() + 3_600_000).toISOString() });
    expect(both.statusCode).toBe(400);
  });
});
