// The VM lifecycle raises `vm.changed` where each change commits — made, started, reset,
// failed, stopped, deleted — on a real database, without QEMU: the VMs service is built
// with a runtime and a start that pretend, so each boot "starts" and its QEMU is found gone
// at once (the VM fails, as one whose QEMU died does). A creation fetches the runtime once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventBus, type DomainEvent } from '../../src/events/bus.js';
import { createPrisma, type Database } from '../../src/infra/database.js';
import { createSecretBox, loadSecretKey } from '../../src/infra/secret-box.js';
import type { VmRuntime, VmRuntimeProvider } from '../../src/infra/vm/runtime.js';
import { createMachineState } from '../../src/modules/machines/state.js';
import { createVmsService, type VmsService } from '../../src/modules/vms/service.js';
import { createMigratedDatabase } from '../helpers/db.js';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-vm-events-'));
let prisma: Database;
let drop: () => Promise<void>;
let vms: VmsService;
const heard: DomainEvent[] = [];
let runtimeFetches = 0;

const fakeRuntime: VmRuntime = { kernel: '/none', initramfs: '/none', kernelVersion: 'none', fingerprint: 'none', accel: 'tcg', qemu: 'none' };
const runtime = {
  get: async () => {
    runtimeFetches++;
    return fakeRuntime;
  },
  status: () => ({ accel: 'tcg' as const }),
} as VmRuntimeProvider;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

beforeAll(async () => {
  const db = await createMigratedDatabase('vmev');
  drop = db.drop;
  prisma = createPrisma(db.target);
  const events = createEventBus(quiet);
  events.onAny((e) => void heard.push(e));
  vms = createVmsService({
    prisma,
    secretBox: createSecretBox(loadSecretKey(undefined, dataDir)),
    state: createMachineState(prisma, events),
    runtime,
    dir: path.join(dataDir, 'vms'),
    imageBase: () => '/none',
    node: 'here',
    // No QEMU: nothing is left running, so the boot's follower finds it gone.
    startVm: async () => ({ pid: 0, mode: 'cold' }),
    limits: { defaultCpus: 1, defaultMemoryMb: 256, maxCpus: 2, maxMemoryMb: 1024, bootTimeoutMs: 10_000 },
    network: { bind: '127.0.0.1', publicHost: '127.0.0.1', ports: [47_300, 47_399], egress: 'none' },
    hostDownAfterMs: 15_000,
    events,
    log: quiet,
  });
  await prisma.image.create({ data: { name: 'evimg', status: 'ready' } });
});
afterAll(async () => {
  await vms.close();
  await prisma.$disconnect();
  await drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The VM events heard so far, as `change:state`. */
const vmChanges = () => heard.flatMap((e) => (e.type === 'vm.changed' ? [`${e.change}:${e.state}`] : []));

async function until(what: string, done: () => boolean) {
  const deadline = Date.now() + 15_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; heard ${JSON.stringify(vmChanges())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('vm.changed', () => {
  it('made, started, failed, reset, stopped and deleted, each once, naming the VM and its machine', async () => {
    const vm = await vms.create({ image: 'evimg', name: 'ev-a' });
    expect(vm).toMatchObject({ name: 'ev-a', state: 'booting', pendingAction: null });
    expect(runtimeFetches).toBe(1);
    const machine = await prisma.machine.findUniqueOrThrow({ where: { name: 'ev-a' } });
    expect(heard.find((e) => e.type === 'vm.changed')).toMatchObject({ vmId: vm.id, machineId: machine.id, name: 'ev-a', change: 'created', state: 'stopped' });
    await until('the boot to fail', () => vmChanges().includes('failed:failed'));
    expect(vmChanges()).toEqual(['created:stopped', 'started:booting', 'failed:failed']);

    expect(await vms.reset(vm.id)).toMatchObject({ id: vm.id, state: 'booting' });
    await until('the reset boot to fail', () => vmChanges().length === 5);
    expect(vmChanges().slice(3)).toEqual(['reset:booting', 'failed:failed']);

    expect(await vms.remove(vm.id)).toEqual({ vm: null, handedOver: false });
    expect(vmChanges().slice(5)).toEqual(['stopped:stopped', 'deleted:null']);
    // Its machine went with it, and said so.
    expect(heard.at(-1)).toMatchObject({ type: 'vm.changed', change: 'deleted', vmId: vm.id, machineId: machine.id });
    expect(heard).toContainEqual(expect.objectContaining({ type: 'machine.changed', transition: 'deleteVmMachine', machineIds: [machine.id] }));
  });
});
