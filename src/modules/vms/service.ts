// VMs: QEMU microvms booted from an image's read-only base, each with its own writable
// overlay, its own SSH host key (pinned) and its own root key (sealed, the machine's
// credential). Every VM is a machine of the pool (type `vm`, tag `image=<name>`); the
// machine is `available` only while the VM runs and answers SSH with its pinned key.
// VMs belong to the host (`node`) that booted them: only berth processes on that host
// touch their QEMU. This file answers the routes; the parts have files of their own:
//   records.ts  rows, keys and ports          launch.ts  starting and stopping QEMU
//   follow.ts   a boot until SSH answers      watch.ts   the job that re-adopts and checks
//   pool.ts     an image's pool size
// State changes are conditional updates on the row, so two requests (or two processes on
// one host) cannot both stop, start or reset a VM; its machine leaves the pool through the
// machine state module, so a VM is never taken from under a reservation.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Machine } from '../../generated/prisma/client.js';
import type { Database } from '../../infra/database.js';
import { AppError } from '../../errors/app-error.js';
import { isUniqueViolation } from '../../infra/database.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { readTail } from '../../infra/vm/console-log.js';
import type { VmRuntimeProvider } from '../../infra/vm/runtime.js';
import { REASONS, type MachineState } from '../machines/state.js';
import { createBootFollower } from './follow.js';
import { createLauncher } from './launch.js';
import { imageGone, withRefs, type CreateVmInput, type VmLimits, type VmRow, type VmsLog } from './model.js';
import { createPoolSizer } from './pool.js';
import { createVmRecords } from './records.js';
import { createVmWatch } from './watch.js';

export type { CreateVmInput, VmLimits, VmRow } from './model.js';

export interface VmsDeps {
  prisma: Database;
  secretBox: SecretBox;
  state: MachineState;
  runtime: VmRuntimeProvider;
  /** <data>/vms: one directory per VM (overlay, seed, console log, pid file). */
  dir: string;
  /** Where an image's ext4 base is. */
  imageBase(imageId: string): string;
  /** This host's name: VMs are managed only by processes on the host that runs them. */
  node: string;
  limits: VmLimits;
  log: VmsLog;
}

export function createVmsService(deps: VmsDeps) {
  const { prisma, secretBox, state, runtime, node, limits, log } = deps;
  const vmDir = (id: string) => path.join(deps.dir, id);
  const records = createVmRecords({ prisma, secretBox, node, limits });
  const follower = createBootFollower({ prisma, secretBox, state, limits, vmDir, log });
  const launcher = createLauncher({ prisma, secretBox, runtime, records, follower, imageBase: deps.imageBase, vmDir, log });
  const { launch } = launcher;

  /** Takes the VM's machine out of the pool for `reason`; 409 when a reservation holds it. */
  async function withdraw(vm: VmRow, reason: string): Promise<void> {
    if (vm.machineId && !(await state.withdrawVm(vm.machineId, reason))) {
      throw new AppError('vm_reserved', `${vm.name} is reserved; release its reservation first`);
    }
  }

  /** Stops QEMU and forgets the VM: its machine, its directory, its row. */
  async function destroy(vm: VmRow): Promise<void> {
    await launcher.halt(vm.id, null);
    await prisma.$transaction([prisma.vm.delete({ where: { id: vm.id } }), ...(vm.machineId ? [state.deleteVmMachine(vm.machineId)] : [])]);
    await fs.rm(vmDir(vm.id), { recursive: true, force: true });
  }

  /** Brings a stopped or failed VM back (a failed one clean). */
  const restart = (vm: VmRow) => withdraw(vm, REASONS.vmBooting).then(() => launch(vm, { discard: vm.state === 'failed', from: [vm.state] }));

  return {
    get: records.get,
    list: records.list,
    watch: createVmWatch({ prisma, state, follower, launcher, node, vmDir, log }),
    resizePool: createPoolSizer({ prisma, state, records, launcher, restart, destroy, node, log }),

    async create(input: CreateVmInput): Promise<VmRow> {
      records.checkLimits(input);
      const image = await records.readyImage(input.image);
      await launcher.requireRuntime();
      let id: string;
      try {
        id = await prisma.$transaction((tx) => records.record(tx, image, input));
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('vm_exists', `a machine or VM named ${input.name ?? 'like that'} exists; try again`);
        throw imageGone(err);
      }
      return launch(await records.get(id), { discard: true, from: ['stopped'] });
    },

    /** Discards the writable layer and boots clean. */
    async reset(id: string): Promise<VmRow> {
      const vm = await records.get(id);
      records.ownedHere(vm);
      await withdraw(vm, REASONS.vmBooting);
      return launch(vm, { discard: true, from: ['booting', 'running', 'stopped', 'failed'] });
    },

    async start(id: string): Promise<VmRow> {
      const vm = await records.get(id);
      records.ownedHere(vm);
      if (vm.state === 'running' || vm.state === 'booting') return vm;
      await withdraw(vm, REASONS.vmBooting);
      return launch(vm, { discard: false, from: ['stopped', 'failed'] });
    },

    async stop(id: string): Promise<VmRow> {
      const vm = await records.get(id);
      records.ownedHere(vm);
      await withdraw(vm, REASONS.vmStopped);
      await launcher.halt(id, 'stopped by an admin');
      return records.get(id);
    },

    async remove(id: string): Promise<void> {
      const vm = await records.get(id);
      records.ownedHere(vm);
      await withdraw(vm, REASONS.vmBeingDeleted);
      await destroy(vm);
    },

    /** The serial console: kernel messages, berth's init, and the image's command output. */
    async consoleLog(id: string, maxBytes = 256 * 1024): Promise<string> {
      records.ownedHere(await records.get(id));
      return readTail(follower.consolePath(id), maxBytes);
    },

    /**
     * For reservations: when `machine` is a VM, resets it (the next user gets a pristine
     * machine; nothing of the last one survives) and answers true; false for other machines.
     * Its machine leaves the reservation at once and rejoins the pool when the VM is up.
     */
    async recycle(machine: Machine, reservationId: string): Promise<boolean> {
      const vm = await prisma.vm.findUnique({ where: { machineId: machine.id }, include: withRefs });
      if (!vm) return false;
      // Already recycled (a retry after a crash), and maybe someone else's now: leave it be.
      if (vm.machine?.reservationId !== reservationId) return true;
      if (vm.node !== node) throw new Error(`the VM runs on ${vm.node}; a berth process there resets it`);
      await launch(vm, { discard: true, from: ['booting', 'running', 'stopped', 'failed'] });
      await state.recycleVm(machine.id, reservationId);
      return true;
    },

    /** Stops following boots (the VMs keep running; the next process re-adopts them). */
    async close(): Promise<void> {
      follower.close();
      await launcher.close();
    },
  };
}

export type VmsService = ReturnType<typeof createVmsService>;
