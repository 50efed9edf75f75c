// The pool's state machine raises `machine.changed` for every transition that changed
// something, once committed, naming only the machines it moved and where they went: on a
// real database, without SSH, heard through a bus of the test's own.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Machine, PrismaClient } from '../../src/generated/prisma/client.js';
import { createEventBus, type EventBus } from '../../src/events/bus.js';
import { createPrisma } from '../../src/infra/database.js';
import { REASONS, createMachineState, type MachineState } from '../../src/modules/machines/state.js';
import { createMigratedDatabase } from '../helpers/db.js';
import { listen } from '../helpers/events.js';

let prisma: PrismaClient;
let events: EventBus;
let state: MachineState;
let drop: () => Promise<void>;
let heard: ReturnType<typeof listen>;
beforeAll(async () => {
  const db = await createMigratedDatabase('stateev');
  drop = db.drop;
  prisma = createPrisma(db.target);
  events = createEventBus({ error: () => {} });
  heard = listen(events);
  state = createMachineState(prisma, events);
});
afterAll(async () => {
  await prisma.$disconnect();
  await drop();
});
beforeEach(() => heard.forget());
const takeHeard = () => heard.take();

const change = (transition: string, machineIds: string[], status: Machine['status'] | 'deleted' | null, reservationId: string | null = null) => ({
  type: 'machine.changed',
  transition,
  machineIds,
  status,
  reservationId,
});

let n = 0;
async function machine(data: Partial<Machine> = {}): Promise<Machine> {
  return prisma.machine.create({
    data: { name: `ev${++n}`, host: '127.0.0.1', port: 1, username: 'root', credentialKind: 'password', credential: Buffer.from('x'), tags: {}, ...data } as never,
  });
}

async function reservation(status: 'active' | 'released' = 'active'): Promise<string> {
  const r = await prisma.reservation.create({
    data: { ownerUsername: 'alice', status, accountUsername: 'alice', durationMinutes: 60, maxExpiresAt: new Date(Date.now() + 3_600_000) },
  });
  return r.id;
}

async function vmOf(machineId: string, vmState: 'running' | 'booting' = 'running') {
  const image = await prisma.image.create({ data: { name: `evimg${++n}`, status: 'ready' } });
  return prisma.vm.create({
    data: {
      name: `evvm${n}`, imageId: image.id, machineId, state: vmState, node: 'here', cpus: 1, memoryMb: 256, sshPort: 41_000 + n,
      hostKeyFingerprint: 'SHA256:x', hostKeyPublic: 'ssh-ed25519 AAAA', hostKeySealed: Buffer.from('x'), rootKeyPublic: 'ssh-ed25519 AAAA',
    },
  });
}

/** A claim in a transaction of allocation's kind: raised only once it commits. */
const claim = (ids: string[], r: string, then: () => void = () => {}) =>
  events.afterCommit((record) =>
    prisma.$transaction(async (tx) => {
      const count = await state.claim(tx, ids, r, record);
      then();
      return count;
    }),
  );

describe('machine.changed', () => {
  it('a claim is raised after its transaction commits, for the machines it took; nothing when it rolls back', async () => {
    const [a, b] = [await machine(), await machine({ status: 'maintenance' })];
    const r = await reservation();
    await expect(
      claim([a.id], r, () => {
        expect(heard.take()).toEqual([]); // not before the commit
        throw new Error('allocation failed');
      }),
    ).rejects.toThrow('allocation failed');
    expect(takeHeard()).toEqual([]);

    expect(await claim([a.id, b.id], r)).toBe(1);
    expect(takeHeard()).toEqual([change('claim', [a.id], 'reserved', r)]);
    expect(await claim([a.id], await reservation())).toBe(0);
    expect(takeHeard()).toEqual([]);
  });

  it('a release, a failed cleanup and its end say where the machine went; a no-op says nothing', async () => {
    const [plain, sudo] = [await machine(), await machine({ allowSudo: true })];
    const r = await reservation();
    await claim([plain.id, sudo.id], r);
    await state.sudoGranted(sudo.id, r);
    takeHeard();

    await state.free(plain.id, await reservation());
    expect(takeHeard()).toEqual([]);
    await state.free(plain.id, r);
    await state.free(sudo.id, r);
    expect(takeHeard()).toEqual([change('free', [plain.id], 'available', r), change('free', [sudo.id], 'needs_reprovision', r)]);

    const other = await reservation();
    await claim([plain.id], other);
    await state.markCleanupPending(plain.id, other, 'alice', 'connection refused');
    const pending = await prisma.machine.findUniqueOrThrow({ where: { id: plain.id } });
    await state.backToReservation(pending);
    await state.markCleanupPending(plain.id, other, 'alice', 'connection refused');
    await state.cleanedUp(pending);
    await state.cleanedUp(pending); // done already
    expect(takeHeard()).toEqual([
      change('claim', [plain.id], 'reserved', other),
      change('markCleanupPending', [plain.id], 'offline', other),
      change('backToReservation', [plain.id], 'reserved', other),
      change('markCleanupPending', [plain.id], 'offline', other),
      change('cleanedUp', [plain.id], 'available', other),
    ]);
  });

  it('sudo, maintenance, reprovisioning and an idle machine going offline', async () => {
    const m = await machine({ allowSudo: true });
    const r = await reservation();
    await claim([m.id], r);
    takeHeard();
    await state.sudoGranted(m.id, r);
    await state.sudoGranted(m.id, await reservation()); // not that reservation's
    // Its status stays what it was.
    expect(takeHeard()).toEqual([change('sudoGranted', [m.id], null, r)]);
    await state.free(m.id, r);
    takeHeard();

    expect(await state.reprovisionStarted(await prisma.machine.findUniqueOrThrow({ where: { id: m.id } }))).toBe(true);
    await state.reprovisionInterrupted(m.id);
    expect(await state.reprovisionFailed(m.id, 'exit 1')).toBe(true);
    expect(await state.reprovisioned(m.id)).toBe(true);
    expect(await state.reprovisioned(m.id)).toBe(false);
    await state.takeOfflineIfIdle(m.id, 'connection refused');
    await state.takeOfflineIfIdle(m.id, 'connection refused'); // offline already
    expect(await state.enterMaintenance(m.id, 'disk')).toBe(true);
    expect(await state.leaveMaintenance(m.id)).toBe(true);
    expect(await state.leaveMaintenance(m.id)).toBe(false);
    await state.recordCheck(m.id); // a timestamp, not a transition
    expect(takeHeard()).toEqual([
      change('reprovisionStarted', [m.id], 'needs_reprovision'),
      change('reprovisionInterrupted', [m.id], 'needs_reprovision'),
      change('reprovisionFailed', [m.id], 'needs_reprovision'),
      change('reprovisioned', [m.id], 'available'),
      change('takeOfflineIfIdle', [m.id], 'offline'),
      change('enterMaintenance', [m.id], 'maintenance'),
      change('leaveMaintenance', [m.id], 'available'),
    ]);
    expect((await prisma.machine.findUniqueOrThrow({ where: { id: m.id } })).statusReason).toBeNull();
  });

  it('a changed host key names the reservation that holds the machine; a deletion has no status', async () => {
    const m = await machine();
    const r = await reservation();
    await claim([m.id], r);
    takeHeard();
    await state.hostKeyChanged(m.id, 'host key changed');
    expect(takeHeard()).toEqual([change('hostKeyChanged', [m.id], 'offline', r)]);

    const idle = await machine();
    expect(await state.deleteUnlessHeld({ id: m.id, reservationId: null })).toBe(false);
    expect(await state.deleteUnlessHeld(idle)).toBe(true);
    expect(takeHeard()).toEqual([change('deleteUnlessHeld', [idle.id], 'deleted')]);
  });

  it("VMs' machines: withdrawn (alone or in a caller's transaction), returned, host down, failed, recycled, deleted", async () => {
    const [a, b, c] = [await machine({ type: 'vm' }), await machine({ type: 'vm' }), await machine({ type: 'vm', status: 'offline' })];
    for (const m of [a, b, c]) await vmOf(m.id);
    expect(await state.withdrawVm(a.id, REASONS.vmBooting)).toBe(true);
    await state.returnVm(a.id);
    await state.returnVm(a.id); // in the pool already
    expect(await state.vmHostDown([a.id, b.id, c.id])).toBe(2);
    expect(takeHeard()).toEqual([
      change('withdrawVm', [a.id], 'offline'),
      change('returnVm', [a.id], 'available'),
      change('vmHostDown', [a.id, b.id], 'offline'),
    ]);
    expect(await state.vmHostDown([])).toBe(0);
    expect(takeHeard()).toEqual([]);

    // In a pool resize's transaction: raised when it commits, not when it rolls back.
    await expect(
      events.afterCommit((record) =>
        prisma.$transaction(async (tx) => {
          await state.withdrawVm(b.id, REASONS.vmBeingDeleted, { tx, record });
          throw new Error('pool_reserved');
        }),
      ),
    ).rejects.toThrow('pool_reserved');
    expect(takeHeard()).toEqual([]);
    await events.afterCommit((record) => prisma.$transaction((tx) => state.withdrawVm(b.id, REASONS.vmBeingDeleted, { tx, record })));
    expect(takeHeard()).toEqual([change('withdrawVm', [b.id], 'offline')]);

    const r = await reservation();
    await prisma.machine.update({ where: { id: c.id }, data: { status: 'reserved', reservationId: r } });
    await state.vmFailed(c.id, 'QEMU exited');
    await state.recycleVm(c.id, randomUUID());
    await state.recycleVm(c.id, r);
    expect(takeHeard()).toEqual([change('vmFailed', [c.id], 'offline', r), change('recycleVm', [c.id], 'offline', r)]);

    await events.afterCommit((record) =>
      prisma.$transaction(async (tx) => {
        await tx.vm.deleteMany({ where: { machineId: b.id } });
        expect((await state.deleteVmMachine(b.id, { tx, record })).count).toBe(1);
      }),
    );
    expect((await state.deleteVmMachine(c.id)).count).toBe(1);
    expect(takeHeard()).toEqual([change('deleteVmMachine', [b.id], 'deleted'), change('deleteVmMachine', [c.id], 'deleted')]);
  });

  it("freeOrphans says where each machine of an ended reservation went, and nothing when there is none", async () => {
    expect(await state.freeOrphans()).toBe(0);
    const ended = await reservation('released');
    const [plain, sudo, vmMachine, live] = [
      await machine({ status: 'reserved', reservationId: ended }),
      await machine({ status: 'reserved', reservationId: ended, sudoGranted: true }),
      await machine({ status: 'reserved', reservationId: ended, type: 'vm' }),
      await machine({ status: 'reserved', reservationId: await reservation() }),
    ];
    await vmOf(vmMachine.id);
    takeHeard();
    expect(await state.freeOrphans()).toBe(3);
    const got = takeHeard();
    expect(got).toHaveLength(3);
    expect(got).toEqual(
      expect.arrayContaining([
        change('freeOrphans', [plain.id], 'available', ended),
        change('freeOrphans', [sudo.id], 'needs_reprovision', ended),
        change('freeOrphans', [vmMachine.id], 'offline', ended),
      ]),
    );
    expect(got.flatMap((e) => (e.type === 'machine.changed' ? e.machineIds : []))).not.toContain(live.id);
    expect(await state.freeOrphans()).toBe(0);
    expect(takeHeard()).toEqual([]);
  });
});
