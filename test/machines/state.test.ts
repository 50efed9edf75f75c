// The pool's state machine, transition by transition, on a real database and without SSH:
// each moves a machine only from the state it names, and none takes a machine from under
// a live reservation or from one still holding a leftover account.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Machine, PrismaClient } from '../../src/generated/prisma/client.js';
import { createPrisma } from '../../src/infra/database.js';
import { REASONS, createMachineState, neutralReason, type MachineState } from '../../src/modules/machines/state.js';
import { createMigratedDatabase } from '../helpers/db.js';

let prisma: PrismaClient;
let state: MachineState;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createMigratedDatabase('state');
  drop = db.drop;
  prisma = createPrisma(db.target);
  state = createMachineState(prisma, { raise: async () => {} });
});
afterAll(async () => {
  await prisma.$disconnect();
  await drop();
});

let n = 0;
async function machine(data: Partial<Machine> = {}): Promise<Machine> {
  return prisma.machine.create({
    data: { name: `m${++n}`, host: '127.0.0.1', port: 1, username: 'root', credentialKind: 'password', credential: Buffer.from('x'), tags: {}, ...data } as never,
  });
}
const read = (id: string) => prisma.machine.findUniqueOrThrow({ where: { id } });

async function reservation(status: 'active' | 'released' = 'active'): Promise<string> {
  const r = await prisma.reservation.create({
    data: { ownerUsername: 'alice', status, accountUsername: 'alice', durationMinutes: 60, maxExpiresAt: new Date(Date.now() + 3_600_000) },
  });
  return r.id;
}

/** A VM record for `machineId`, in `vmState`. */
async function vmOf(machineId: string, vmState: 'running' | 'booting' = 'running') {
  const image = await prisma.image.create({ data: { name: `img${++n}`, status: 'ready' } });
  return prisma.vm.create({
    data: {
      name: `vm${n}`, imageId: image.id, machineId, state: vmState, node: 'here', cpus: 1, memoryMb: 256, sshPort: 40_000 + n,
      hostKeyFingerprint: 'SHA256:x', hostKeyPublic: 'ssh-ed25519 AAAA', hostKeySealed: Buffer.from('x'), rootKeyPublic: 'ssh-ed25519 AAAA',
    },
  });
}

describe('reservations', () => {
  it('claim takes only available machines; free gives back only what the same reservation holds', async () => {
    const [a, b] = [await machine(), await machine({ status: 'maintenance' })];
    const r = await reservation();
    expect(await prisma.$transaction((tx) => state.claim(tx, [a.id, b.id], r, () => {}))).toBe(1);
    expect(await read(a.id)).toMatchObject({ status: 'reserved', reservationId: r });
    expect(await read(b.id)).toMatchObject({ status: 'maintenance', reservationId: null });
    // Another reservation cannot claim or free it.
    const other = await reservation();
    expect(await prisma.$transaction((tx) => state.claim(tx, [a.id], other, () => {}))).toBe(0);
    await state.free(a.id, other);
    expect(await read(a.id)).toMatchObject({ status: 'reserved', reservationId: r });
    await state.free(a.id, r);
    expect(await read(a.id)).toMatchObject({ status: 'available', reservationId: null, statusReason: null });
  });

  it('a failed cleanup keeps the link until it is cleaned up, or the machine returns to its live reservation', async () => {
    const m = await machine();
    const r = await reservation();
    await prisma.$transaction((tx) => state.claim(tx, [m.id], r, () => {}));
    await state.markCleanupPending(m.id, r, 'alice', 'connection refused');
    const pending = await read(m.id);
    expect(pending).toMatchObject({ status: 'offline', reservationId: r, statusReason: REASONS.cleanupPending('alice', r, 'connection refused') });
    // No other reservation may mark it, and it cannot be taken into maintenance meanwhile.
    await state.markCleanupPending(m.id, await reservation(), 'bob', 'x');
    expect((await read(m.id)).reservationId).toBe(r);
    expect(await state.enterMaintenance(m.id, 'disk')).toBe(false);
    expect(await state.deleteUnlessHeld({ id: m.id, reservationId: null })).toBe(false);
    await state.backToReservation(pending);
    expect(await read(m.id)).toMatchObject({ status: 'reserved', reservationId: r });
    await state.markCleanupPending(m.id, r, 'alice', 'again');
    await state.cleanedUp(await read(m.id));
    expect(await read(m.id)).toMatchObject({ status: 'available', reservationId: null });
  });

  it('frees machines whose reservation ended, except VMs, which wait for their reset', async () => {
    const ended = await reservation('released');
    const [plain, vmMachine] = [await machine({ status: 'reserved', reservationId: ended }), await machine({ status: 'reserved', reservationId: ended })];
    await vmOf(vmMachine.id);
    const live = await reservation();
    const held = await machine({ status: 'reserved', reservationId: live });
    expect(await state.freeOrphans()).toBe(2);
    expect(await read(plain.id)).toMatchObject({ status: 'available', reservationId: null });
    expect(await read(vmMachine.id)).toMatchObject({ status: 'offline', reservationId: ended, statusReason: REASONS.vmToReset });
    expect(await read(held.id)).toMatchObject({ status: 'reserved', reservationId: live });
  });
});

describe('a machine an account had sudo on', () => {
  it('goes to needs_reprovision instead of the pool by every way back, until reprovisioned', async () => {
    const r = await reservation();
    const released = await machine({ status: 'reserved', reservationId: r });
    // Only the holding reservation marks it.
    await state.sudoGranted(released.id, await reservation());
    expect((await read(released.id)).sudoGranted).toBe(false);
    await state.sudoGranted(released.id, r);
    await state.free(released.id, r);
    expect(await read(released.id)).toMatchObject({ status: 'needs_reprovision', reservationId: null, sudoGranted: true });
    expect(neutralReason(await read(released.id))).toBe('needs reprovision');

    // After a failed cleanup; after a crash (freeOrphans); out of maintenance.
    const pending = await machine({ status: 'reserved', reservationId: r, sudoGranted: true });
    await state.markCleanupPending(pending.id, r, 'alice', 'unreachable');
    await state.cleanedUp(await read(pending.id));
    expect(await read(pending.id)).toMatchObject({ status: 'needs_reprovision', reservationId: null });
    const ended = await reservation('released');
    const orphan = await machine({ status: 'reserved', reservationId: ended, sudoGranted: true });
    expect(await state.freeOrphans()).toBe(1);
    expect(await read(orphan.id)).toMatchObject({ status: 'needs_reprovision', reservationId: null });
    expect(await state.enterMaintenance(orphan.id, 'reinstall')).toBe(true);
    expect(await state.leaveMaintenance(orphan.id)).toBe(true);
    expect((await read(orphan.id)).status).toBe('needs_reprovision');

    expect(await state.reprovisioned(orphan.id)).toBe(true);
    expect(await read(orphan.id)).toMatchObject({ status: 'available', statusReason: null, sudoGranted: false });
    expect(await state.reprovisioned(orphan.id)).toBe(false);
    // A failed reprovision command keeps it waiting, with the reason.
    expect(await state.reprovisionFailed(released.id, 'exit 1: no PXE')).toBe(true);
    expect(await read(released.id)).toMatchObject({ status: 'needs_reprovision', statusReason: expect.stringMatching(/exit 1: no PXE/) });
    expect(await state.reprovisionFailed(orphan.id, 'late')).toBe(false);
  });

  it('is not marked once a VM reset undid what root did', async () => {
    const r = await reservation();
    const m = await machine({ status: 'reserved', reservationId: r, sudoGranted: true });
    await vmOf(m.id);
    await state.recycleVm(m.id, r);
    expect(await read(m.id)).toMatchObject({ status: 'offline', statusReason: REASONS.vmBooting, sudoGranted: false });
  });
});

describe('health and maintenance', () => {
  it('takes only an idle available machine offline on a failed check; a changed host key takes any', async () => {
    const idle = await machine();
    const held = await machine({ status: 'reserved', reservationId: await reservation() });
    await state.takeOfflineIfIdle(idle.id, 'unreachable: refused');
    await state.takeOfflineIfIdle(held.id, 'unreachable: refused');
    expect(await read(idle.id)).toMatchObject({ status: 'offline', statusReason: 'unreachable: refused' });
    expect((await read(held.id)).status).toBe('reserved');
    await state.hostKeyChanged(held.id, 'host key changed');
    expect(await read(held.id)).toMatchObject({ status: 'offline', statusReason: 'host key changed' });
  });

  it('enters and leaves maintenance only from the right states', async () => {
    const m = await machine();
    expect(await state.leaveMaintenance(m.id)).toBe(false);
    expect(await state.enterMaintenance(m.id, 'new disk')).toBe(true);
    expect(await read(m.id)).toMatchObject({ status: 'maintenance', statusReason: 'new disk' });
    expect(await state.leaveMaintenance(m.id)).toBe(true);
    expect(await read(m.id)).toMatchObject({ status: 'available', statusReason: null });
    const held = await machine({ status: 'reserved', reservationId: await reservation() });
    expect(await state.enterMaintenance(held.id, 'x')).toBe(false);
  });
});

describe('VMs', () => {
  it('withdraws an idle VM, never a reserved one; returns it only once it runs and was booting', async () => {
    const m = await machine();
    const vm = await vmOf(m.id, 'booting');
    expect(await state.isVm(m.id)).toBe(true);
    expect(await state.withdrawVm(m.id, REASONS.vmBooting)).toBe(true);
    await state.returnVm(m.id);
    expect((await read(m.id)).status).toBe('offline'); // still booting
    await prisma.vm.update({ where: { id: vm.id }, data: { state: 'running' } });
    await state.returnVm(m.id);
    expect(await read(m.id)).toMatchObject({ status: 'available', statusReason: null });
    // A stopped VM's machine stays out even when its VM runs again by someone else's doing.
    expect(await state.withdrawVm(m.id, REASONS.vmStopped)).toBe(true);
    await state.returnVm(m.id);
    expect((await read(m.id)).statusReason).toBe(REASONS.vmStopped);

    const reserved = await machine({ status: 'reserved', reservationId: await reservation() });
    await vmOf(reserved.id);
    expect(await state.withdrawVm(reserved.id, REASONS.vmStopped)).toBe(false);
    expect((await read(reserved.id)).status).toBe('reserved');
  });

  it('a failed VM goes offline even when reserved; a recycled one leaves its reservation and waits for its boot', async () => {
    const r = await reservation();
    const m = await machine({ status: 'reserved', reservationId: r });
    await vmOf(m.id);
    await state.vmFailed(m.id, 'QEMU exited');
    expect(await read(m.id)).toMatchObject({ status: 'offline', reservationId: r, statusReason: 'vm failed: QEMU exited' });
    await state.recycleVm(m.id, randomUUID());
    expect((await read(m.id)).reservationId).toBe(r);
    await state.recycleVm(m.id, r);
    expect(await read(m.id)).toMatchObject({ status: 'offline', reservationId: null, statusReason: REASONS.vmBooting });
    // Its machine goes with the VM, unless a reservation still links it.
    expect((await state.deleteVmMachine(m.id)).count).toBe(1);
  });
});

describe('what users see', () => {
  it('a neutral word for every reason berth writes', () => {
    const offline = (statusReason: string) => neutralReason({ status: 'offline', statusReason });
    expect(offline(REASONS.cleanupPending('alice', randomUUID(), 'boom'))).toBe('cleanup pending');
    expect(offline(REASONS.vmFailed('QEMU exited (console: secret)'))).toBe('vm failed');
    expect(offline(REASONS.vmBooting)).toBe('vm booting');
    expect(offline('host key changed: pinned SHA256:a server showed SHA256:b')).toBe('unreachable');
    expect(neutralReason({ status: 'maintenance', statusReason: 'alice broke it' })).toBe('maintenance');
    expect(neutralReason({ status: 'reserved', statusReason: null })).toBeNull();
  });
});
