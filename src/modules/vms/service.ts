// VMs: QEMU microvms booted from an image's read-only base, each with its own writable
// overlay, its own SSH host key (pinned) and its own root key (sealed, the machine's
// credential). Every VM is a machine of the pool (type `vm`, tag `image=<name>`); the
// machine is `available` only while the VM runs and answers SSH with its pinned key.
// VMs belong to the host (`node`) that booted them: only the berth process on that host
// touches their QEMU; any other hands the work to it through the database (hosts.ts).
// This file answers the routes; the parts have files of their own:
//   records.ts  rows, keys and ports          launch.ts  starting and stopping QEMU
//   follow.ts   a boot until SSH answers      watch.ts   the job that re-adopts and checks
//   pool.ts     an image's pool size          hosts.ts   which hosts are up; work handed over
// State changes are conditional updates on the row, so two requests (or two processes on
// one host) cannot both stop, start or reset a VM; its machine leaves the pool through the
// machine state module, so a VM is never taken from under a reservation.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Machine, VmAction } from '../../generated/prisma/client.js';
import type { Database } from '../../infra/database.js';
import { AppError } from '../../errors/app-error.js';
import { isUniqueViolation } from '../../infra/database.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { readTail } from '../../infra/vm/console-log.js';
import type { VmRuntimeProvider } from '../../infra/vm/runtime.js';
import type { StartSpec, Started } from '../../infra/vm/start.js';
import { REASONS, type MachineState } from '../machines/state.js';
import { createBootFollower } from './follow.js';
import { createVmHosts } from './hosts.js';
import { createLauncher } from './launch.js';
import { imageGone, withRefs, type CreateVmInput, type VmLimits, type VmNetwork, type VmRow, type VmsLog } from './model.js';
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
  /** Starts a VM's QEMU: restored from its image's template snapshot, or booted cold (infra/vm/start.ts). */
  startVm(spec: StartSpec): Promise<Started>;
  limits: VmLimits;
  network: VmNetwork;
  /** A host that has not said it is alive for this long is down (its VMs leave the pool). */
  hostDownAfterMs: number;
  log: VmsLog;
}

/** Why a VM's machine leaves the pool for each action. */
const WITHDRAWN_FOR: Record<VmAction, string> = {
  reset: REASONS.vmBooting,
  start: REASONS.vmBooting,
  stop: REASONS.vmStopped,
  delete: REASONS.vmBeingDeleted,
};

/** The outcome of an action: the VM as it is now (null once deleted), and whether another host is to do it. */
export interface VmActionResult {
  vm: VmRow | null;
  handedOver: boolean;
}

export function createVmsService(deps: VmsDeps) {
  const { prisma, secretBox, state, runtime, node, limits, log } = deps;
  const vmDir = (id: string) => path.join(deps.dir, id);
  const { network } = deps;
  const records = createVmRecords({ prisma, secretBox, node, limits, network });
  const follower = createBootFollower({ prisma, state, limits, bind: network.bind, vmDir, log });
  const launcher = createLauncher({ prisma, secretBox, runtime, records, follower, startVm: deps.startVm, imageBase: deps.imageBase, vmDir, network, log });
  const { launch } = launcher;
  const hosts = createVmHosts({ prisma, node, publicHost: network.publicHost, downAfterMs: deps.hostDownAfterMs });

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

  /** Does `action` on this host (the VM's machine has left the pool already). */
  async function perform(vm: VmRow, action: VmAction): Promise<VmRow | null> {
    switch (action) {
      case 'reset':
        return launch(vm, { discard: true, from: ['booting', 'running', 'stopped', 'failed'] });
      case 'start':
        return launch(vm, { discard: false, from: ['stopped', 'failed'] });
      case 'stop':
        await launcher.halt(vm.id, 'stopped by an admin');
        return records.get(vm.id);
      case 'delete':
        await destroy(vm);
        return null;
    }
  }

  /** Asks the VM's own host to do `action`: its watch does, within BERTH_VM_WATCH_SECONDS. */
  async function handOver(vm: VmRow, action: VmAction): Promise<VmRow> {
    await prisma.vm.update({ where: { id: vm.id }, data: { pendingAction: action, pendingSince: new Date() } });
    return records.get(vm.id);
  }

  /** `action` on a VM, here or handed to its host; its machine leaves the pool first (409 while reserved). */
  async function act(vm: VmRow, action: VmAction): Promise<VmActionResult> {
    await withdraw(vm, WITHDRAWN_FOR[action]);
    if (vm.node !== node) return { vm: await handOver(vm, action), handedOver: true };
    return { vm: await perform(vm, action), handedOver: false };
  }

  /** Brings a stopped or failed pool member back (a failed one clean). */
  const restart = (vm: VmRow) => act(vm, vm.state === 'failed' ? 'reset' : 'start');

  return {
    get: records.get,
    list: (q: Parameters<typeof records.list>[0]) => records.list(q, hosts.upSince()),
    upHosts: hosts.upHosts,
    watch: createVmWatch({ prisma, state, hosts, perform, follower, launcher, node, vmDir, log }),
    resizePool: createPoolSizer({ prisma, state, records, launcher, restart, remove: (vm) => act(vm, 'delete'), log }),

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
    reset: async (id: string) => act(await records.get(id), 'reset'),

    async start(id: string): Promise<VmActionResult> {
      const vm = await records.get(id);
      if (vm.state === 'running' || vm.state === 'booting') return { vm, handedOver: false };
      return act(vm, 'start');
    },

    stop: async (id: string) => act(await records.get(id), 'stop'),
    remove: async (id: string) => act(await records.get(id), 'delete'),

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
      if (vm.node === node) await launch(vm, { discard: true, from: ['booting', 'running', 'stopped', 'failed'] });
      else await handOver(vm, 'reset');
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
