// A reservation's status, transition by transition, on a real database and without SSH:
// each moves a reservation only from the status, and under the lease, that it names; the
// process whose update won raises the event once; an update that did not apply, or an
// allocation that rolled back, raises nothing.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PrismaClient } from '../../src/generated/prisma/client.js';
import { createEventBus, type DomainEvent } from '../../src/events/bus.js';
import { createPrisma } from '../../src/infra/database.js';
import type { Principal } from '../../src/shared/principal.js';
import { createMachineState } from '../../src/modules/machines/state.js';
import { createAllocator } from '../../src/modules/reservations/allocation.js';
import { createDecisions } from '../../src/modules/reservations/decisions.js';
import { createRequestHasher } from '../../src/modules/reservations/idempotency.js';
import { createReservationStatus, type ReservationStatusWriter } from '../../src/modules/reservations/status.js';
import { createMigratedDatabase } from '../helpers/db.js';

let prisma: PrismaClient;
let drop: () => Promise<void>;
let status: ReservationStatusWriter;
const raised: DomainEvent[] = [];
const events = createEventBus({ error: () => {} });
events.onAny((e) => void raised.push(e));
const log = { warn: () => {}, info: () => {} };

beforeAll(async () => {
  const db = await createMigratedDatabase('rstatus');
  drop = db.drop;
  prisma = createPrisma(db.target);
  status = createReservationStatus({ prisma, events, policy: { leaseSeconds: 60, maxTotalMinutes: 600 }, instanceId: 'here', log });
});
afterAll(async () => {
  await prisma.$disconnect();
  await drop();
});
beforeEach(() => void raised.splice(0));

let n = 0;
async function user(): Promise<string> {
  const u = await prisma.user.create({ data: { username: `u${++n}`, passwordHash: 'x' } });
  return u.id;
}
async function machine(data: { status?: 'available' | 'maintenance'; tags?: Record<string, string> } = {}): Promise<string> {
  const m = await prisma.machine.create({
    data: { name: `m${++n}`, host: '127.0.0.1', port: 1, username: 'root', credentialKind: 'password', credential: Buffer.from('x'), tags: {}, ...data },
  });
  return m.id;
}
/** A reservation in `status`, under `lease` until `leaseUntil`, expiring at `expiresAt`. */
async function reservation(
  userId: string | null,
  s: 'provisioning' | 'active' | 'releasing' | 'released',
  { lease = null as string | null, leaseUntil = null as Date | null, expiresAt = null as Date | null } = {},
) {
  const r = await prisma.reservation.create({
    data: {
      userId, ownerUsername: 'alice', status: s, accountUsername: 'alice', durationMinutes: 60,
      maxExpiresAt: new Date(Date.now() + 3_600_000), leaseOwner: lease, leaseUntil, expiresAt,
    },
  });
  return { id: r.id, userId };
}
const read = (id: string) => prisma.reservation.findUniqueOrThrow({ where: { id } });
const changes = () => raised.filter((e) => e.type === 'reservation.changed').map((e) => ({ ...e, at: undefined }));

describe('reservation status', () => {
  it('activate: provisioning under its lease becomes active, for a user who still exists, keeping the window it was planned with; raised once', async () => {
    const window = new Date(Date.now() + 30 * 60_000);
    const r = await reservation(await user(), 'provisioning', { lease: 'here/a', leaseUntil: new Date(Date.now() + 60_000), expiresAt: window });
    // Another lease: nothing.
    expect(await status.activate(r, 'here/other')).toBe(false);
    expect(raised).toEqual([]);
    expect(await status.activate(r, 'here/a')).toBe(true);
    const active = await read(r.id);
    expect(active).toMatchObject({ status: 'active', leaseUntil: null });
    // The window was fixed when it was planned: setting up the accounts does not push it into a booking behind it.
    expect(active.expiresAt).toEqual(window);
    expect(active.activatedAt).toBeInstanceOf(Date);
    expect(changes()).toEqual([{ type: 'reservation.changed', reservationId: r.id, userId: r.userId, from: 'provisioning', to: 'active', reason: null, adminDetail: null, at: undefined }]);
    // Not twice: it is active now.
    expect(await status.activate(r, 'here/a')).toBe(false);
    expect(raised).toHaveLength(1);
  });

  it('activate: a reservation whose user was deleted meanwhile stays provisioning', async () => {
    const r = await reservation(null, 'provisioning', { lease: 'here/b', leaseUntil: new Date(Date.now() + 60_000) });
    expect(await status.activate(r, 'here/b')).toBe(false);
    expect((await read(r.id)).status).toBe('provisioning');
    expect(raised).toEqual([]);
  });

  /** An extension in its own transaction, as the service runs it (after checking the bookings behind it). */
  const extendIn = (r: { id: string; userId: string | null; expiresAt: Date }, to: Date) =>
    events.afterCommit((record) => prisma.$transaction((tx) => status.extend({ tx, record }, r, to)));

  it('extend: compare-and-set on the expiry as read, only while it has not passed; raises reservation.extended once', async () => {
    const expiresAt = new Date(Date.now() + 60_000);
    const r = await reservation(await user(), 'active', { expiresAt });
    const later = new Date(expiresAt.getTime() + 600_000);
    // Read with another expiry (another extension won meanwhile): refused.
    expect(await extendIn({ ...r, expiresAt: new Date(expiresAt.getTime() - 1) }, later)).toBe(false);
    expect(raised).toEqual([]);
    expect(await extendIn({ ...r, expiresAt }, later)).toBe(true);
    expect((await read(r.id)).expiresAt).toEqual(later);
    expect(raised).toEqual([{ type: 'reservation.extended', reservationId: r.id, userId: r.userId, expiresAt: later, at: expect.any(Date) }]);
    // The second of two extensions that read the same expiry loses.
    expect(await extendIn({ ...r, expiresAt }, new Date(later.getTime() + 1))).toBe(false);
    // One that has run out is not extended; nor one that is not active.
    const past = new Date(Date.now() - 1000);
    const expired = await reservation(r.userId, 'active', { expiresAt: past });
    expect(await extendIn({ ...expired, expiresAt: past }, later)).toBe(false);
    const releasing = await reservation(r.userId, 'releasing', { expiresAt });
    expect(await extendIn({ ...releasing, expiresAt }, later)).toBe(false);
    expect(raised).toHaveLength(1);
  });

  it('claimForRelease: active becomes releasing under a new lease, once across racing claims; onlyIfExpired waits for the expiry', async () => {
    const userId = await user();
    const r = await reservation(userId, 'active', { expiresAt: new Date(Date.now() + 60_000) });
    expect(await status.claimForRelease(r, 'expired', true)).toBeNull();
    const tokens = await Promise.all([1, 2, 3].map(() => status.claimForRelease(r, 'released')));
    const won = tokens.filter((t) => t !== null);
    expect(won).toHaveLength(1);
    expect(await read(r.id)).toMatchObject({ status: 'releasing', releaseReason: 'released', leaseOwner: won[0] });
    expect(changes()).toEqual([{ type: 'reservation.changed', reservationId: r.id, userId, from: 'active', to: 'releasing', reason: 'released', adminDetail: null, at: undefined }]);

    const due = await reservation(userId, 'active', { expiresAt: new Date(Date.now() - 1000) });
    expect(await status.claimForRelease(due, 'expired', true)).not.toBeNull();
    expect((await read(due.id)).releaseReason).toBe('expired');
    // Not from any other status.
    const provisioning = await reservation(userId, 'provisioning', { lease: 'here/p', leaseUntil: new Date(Date.now() + 60_000) });
    expect(await status.claimForRelease(provisioning, 'released')).toBeNull();
    expect(raised).toHaveLength(2);
  });

  it('takeOver: only a lease that ran out, in the status as read, and raises nothing (the status stays)', async () => {
    const userId = await user();
    const live = await reservation(userId, 'releasing', { lease: 'there/1', leaseUntil: new Date(Date.now() + 60_000) });
    expect(await status.takeOver({ id: live.id, status: 'releasing' }, new Date())).toBeNull();
    const stale = await reservation(userId, 'releasing', { lease: 'there/2', leaseUntil: new Date(Date.now() - 1000) });
    expect(await status.takeOver({ id: stale.id, status: 'provisioning' }, new Date())).toBeNull();
    const [a, b] = await Promise.all([status.takeOver({ id: stale.id, status: 'releasing' }, new Date()), status.takeOver({ id: stale.id, status: 'releasing' }, new Date())]);
    const token = a ?? b;
    expect([a, b].filter(Boolean)).toHaveLength(1);
    const after = await read(stale.id);
    expect(after).toMatchObject({ status: 'releasing', leaseOwner: token });
    expect(after.leaseUntil!.getTime()).toBeGreaterThan(Date.now());
    expect(raised).toEqual([]);
  });

  it('renewLease: only under the lease named', async () => {
    const r = await reservation(await user(), 'provisioning', { lease: 'here/r', leaseUntil: new Date(Date.now() + 1000) });
    await status.renewLease(r.id, 'here/other');
    expect((await read(r.id)).leaseUntil!.getTime()).toBeLessThan(Date.now() + 2000);
    await status.renewLease(r.id, 'here/r');
    expect((await read(r.id)).leaseUntil!.getTime()).toBeGreaterThan(Date.now() + 50_000);
    expect(raised).toEqual([]);
  });

  it('finish: under its lease only, released with why or failed with what went wrong; raised once', async () => {
    const userId = await user();
    const r = await reservation(userId, 'releasing', { lease: 'here/f', leaseUntil: new Date(Date.now() + 60_000) });
    expect(await status.finish({ ...r, status: 'releasing' }, 'here/lost', 'released', 'expired')).toBe(false);
    expect(raised).toEqual([]);
    expect(await status.finish({ ...r, status: 'releasing' }, 'here/f', 'released', 'expired')).toBe(true);
    expect(await read(r.id)).toMatchObject({ status: 'released', releaseReason: 'expired', leaseUntil: null, releasedAt: expect.any(Date) });
    expect(changes()).toEqual([{ type: 'reservation.changed', reservationId: r.id, userId, from: 'releasing', to: 'released', reason: 'expired', adminDetail: null, at: undefined }]);
    expect(await status.finish({ ...r, status: 'releasing' }, 'here/f', 'released', 'expired')).toBe(false);

    const p = await reservation(userId, 'provisioning', { lease: 'here/g', leaseUntil: new Date(Date.now() + 60_000) });
    const long = `could not set up the account on m: ${'x'.repeat(2000)}`;
    expect(await status.finish({ ...p, status: 'provisioning' }, 'here/g', 'failed', long)).toBe(true);
    const failed = await read(p.id);
    expect(failed).toMatchObject({ status: 'failed', releaseReason: null });
    expect(failed.failureReason).toBe(long.slice(0, 1024));
    expect(raised).toHaveLength(2);
    // Its owner reads which machine, and that all was undone; the machine's own words are for admins.
    expect(changes()[1]).toMatchObject({
      from: 'provisioning',
      to: 'failed',
      reason: 'could not set up the account on m; everything was undone (an admin can read why)',
      adminDetail: long.slice(0, 1024),
    });
  });
});

describe('open, in allocation’s transaction', () => {
  const allocate = () =>
    createAllocator({
      decide: createDecisions(prisma, events), state: createMachineState(prisma, events), status, policy: { maxMachinesPerUser: 5, bookingHorizonDays: 30, maxMinutes: 480 },
      requestHash: createRequestHasher(Buffer.alloc(32)), node: 'here', vmHostDownAfterMs: 60_000,
    });
  const actor = (userId: string, username: string) => ({ userId, username, role: 'user' }) as Principal;

  it('opens a provisioning reservation under a new lease holding the machines, raising its event after the commit', async () => {
    const userId = await user();
    const tag = randomUUID();
    const ids = [await machine({ tags: { pool: tag } }), await machine({ tags: { pool: tag } })];
    const decision = await allocate()(actor(userId, 'alice'), { input: { count: 2, tags: { pool: tag } }, account: 'alice', durationMinutes: 30 });
    if (decision.kind !== 'claimed') throw new Error(`not claimed: ${decision.kind}`);
    const { id, token, machines } = decision;
    // The claimed machines come back whole, in name order, as Prisma reads them: setting up reads them no more.
    const stored = await prisma.machine.findMany({ where: { id: { in: ids } }, orderBy: { name: 'asc' } });
    expect(machines).toEqual(stored.map((m) => ({ ...m, status: 'available', reservationId: null, updatedAt: expect.any(Date) })));
    expect(await read(id)).toMatchObject({ status: 'provisioning', userId, leaseOwner: token, durationMinutes: 30 });
    expect((await prisma.machine.findMany({ where: { id: { in: ids } } })).map((m) => m.reservationId)).toEqual([id, id]);
    expect(changes()).toEqual([{ type: 'reservation.changed', reservationId: id, userId, from: null, to: 'provisioning', reason: null, adminDetail: null, at: undefined }]);
  });

  it('raises nothing when the allocation rolls back (insufficient capacity), and leaves no reservation', async () => {
    const userId = await user();
    const tag = randomUUID();
    await machine({ tags: { pool: tag } });
    await machine({ tags: { pool: tag }, status: 'maintenance' });
    await expect(allocate()(actor(userId, 'bob'), { input: { count: 2, tags: { pool: tag } }, account: 'bob', durationMinutes: 30 })).rejects.toMatchObject({
      code: 'insufficient_capacity',
    });
    expect(await prisma.reservation.count({ where: { userId } })).toBe(0);
    expect(raised).toEqual([]);
  });

  it('matches tags exactly, as the machine list does: case and trailing spaces count', async () => {
    const userId = await user();
    const tag = randomUUID();
    await machine({ tags: { pool: tag, gpu: 'a100' } });
    for (const gpu of ['A100', 'a100 ']) {
      await expect(allocate()(actor(userId, 'carol'), { input: { count: 1, tags: { pool: tag, gpu } }, account: 'carol', durationMinutes: 30 })).rejects.toMatchObject({
        code: 'insufficient_capacity',
      });
    }
    const decision = await allocate()(actor(userId, 'carol'), { input: { count: 1, tags: { pool: tag, gpu: 'a100' } }, account: 'carol', durationMinutes: 30 });
    expect(decision.kind === 'claimed' && decision.machines).toHaveLength(1);
  });

  it('raises nothing for a reservation opened in a transaction that then rolled back', async () => {
    const userId = await user();
    const tag = randomUUID();
    await machine({ tags: { pool: tag } });
    // The claim failing after `open` recorded its event: a fault the locks make impossible for real.
    const failing = createAllocator({
      decide: createDecisions(prisma, events), state: { claim: async () => 0 }, status, policy: { maxMachinesPerUser: 5, bookingHorizonDays: 30, maxMinutes: 480 },
      requestHash: createRequestHasher(Buffer.alloc(32)), node: 'here', vmHostDownAfterMs: 60_000,
    });
    await expect(failing(actor(userId, 'carol'), { input: { count: 1, tags: { pool: tag } }, account: 'carol', durationMinutes: 30 })).rejects.toThrow(/claimed 0 of 1/);
    expect(await prisma.reservation.count({ where: { userId } })).toBe(0);
    expect(raised).toEqual([]);
  });
});
