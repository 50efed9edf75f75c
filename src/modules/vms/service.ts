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
//   queries.ts  the views answers show
// State changes are conditional updates on the row, so two requests (or two processes on
// one host) cannot both stop, start or reset a VM; its machine leaves the pool through the
// machine state module, so a VM is never taken from under a reservation. Each change is
// raised as `vm.changed` where it commits (records, launch, follow, destroy below).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { EventBus } from '../../events/bus.js';
import type { Machine, Vm, VmAction } from '../../generated/prisma/client.js';
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
import { createVmViews, type VmView } from './queries.js';
import { createVmRecords } from './records.js';
import { createVmWatch } from './watch.js';

export type { CreateVmInput, VmLimits, VmRow } from './model.js';
export type { NodeStatus, VmView } from './queries.js';

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
  events: Pick<EventBus, 'raise' | 'afterCommit'>;
  log: VmsLog;
}

/** Why a VM's machine leaves the pool for each action. */
const WITHDRAWN_FOR: Record<VmAction, string> = {
  reset: REASONS.vmBooting,
  start: REASONS.vmBooting,
  stop: REASONS.vmStopped,
  delete: REASONS.vmBeingDeleted,
};

/** What the answer to an accepted request shows of a VM. */
export type VmAccepted = Pick<Vm, 'id' | 'name' | 'state' | 'pendingAction'>;

/** The outcome of a stop or a delete: the VM as it is now (null once deleted), and whether another host is to do it. */
export interface VmActionResult {
  vm: VmView | null;
  handedOver: boolean;
}

export function createVmsService(deps: VmsDeps) {
  const { prisma, secretBox, state, runtime, node, limits, events, log } = deps;
  const vmDir = (id: string) => path.join(deps.dir, id);
  const { network } = deps;
  const records = createVmRecords({ prisma, secretBox, node, limits, network });
  const follower = createBootFollower({ prisma, state, limits, bind: network.bind, vmDir, events, log });
  const launcher = createLauncher({ prisma, secretBox, runtime, records, follower, startVm: deps.startVm, imageBase: deps.imageBase, vmDir, network, events, log });
  const { launch } = launcher;
  const hosts = createVmHosts({ prisma, node, publicHost: network.publicHost, downAfterMs: deps.hostDownAfterMs });
  const views = createVmViews(prisma, hosts.upSince);

  /** Takes the VM's machine out of the pool for `reason`; 409 when a reservation holds it. */
  async function withdraw(vm: VmRow, reason: string): Promise<void> {
    if (vm.machineId && !(await state.withdrawVm(vm.machineId, reason))) {
      throw new AppError('vm_reserved', `${vm.name} is reserved; release its reservation first`);
    }
  }

  /** Stops QEMU and forgets the VM: its machine, its directory, its row. */
  async function destroy(vm: VmRow): Promise<void> {
    await launcher.halt(vm, null);
    await events.afterCommit((record) =>
      prisma.$transaction(async (tx) => {
        await tx.vm.delete({ where: { id: vm.id } });
        if (vm.machineId) await state.deleteVmMachine(vm.machineId, { tx, record });
        record('vm.changed', { vmId: vm.id, machineId: vm.machineId, name: vm.name, change: 'deleted', state: null });
      }),
    );
    await fs.rm(vmDir(vm.id), { recursive: true, force: true });
  }

  /** Does `action` on this host (the VM's machine has left the pool already); a launch answers the VM as it left it. */
  async function perform(vm: VmRow, action: VmAction): Promise<VmAccepted | null> {
    switch (action) {
      case 'reset':
        return launch(vm, { discard: true, from: ['booting', 'running', 'stopped', 'failed'] });
      case 'start':
        return launch(vm, { discard: false, from: ['stopped', 'failed'] });
      case 'stop':
        await launcher.halt(vm, 'stopped by an admin');
        return null;
      case 'delete':
        await destroy(vm);
        return null;
    }
  }

  /** Asks the VM's own host to do `action`: its watch does, within BERTH_VM_WATCH_SECONDS. */
  async function handOver(vm: VmRow, action: VmAction): Promise<VmAccepted> {
    return prisma.vm.update({ where: { id: vm.id }, data: { pendingAction: action, pendingSince: new Date() } });
  }

  /**
   * `action` on a VM, here or handed to its host; its machine leaves the pool first (409
   * while reserved). The VM as the action left it, for a launch or a hand-over.
   */
  async function act(vm: VmRow, action: VmAction): Promise<{ vm: VmAccepted | null; handedOver: boolean }> {
    await withdraw(vm, WITHDRAWN_FOR[action]);
    if (vm.node !== node) return { vm: await handOver(vm, action), handedOver: true };
    return { vm: await perform(vm, action), handedOver: false };
  }

  /** Reset or start: answered with what the action left (no read). */
  const accepted = async (vm: VmRow, action: 'reset' | 'start'): Promise<VmAccepted> => (await act(vm, action)).vm!;

  /** Brings a stopped or failed pool member back (a failed one clean). */
  const restart = (vm: VmRow) => act(vm, vm.state === 'failed' ? 'reset' : 'start');

  return {
    getOrThrow: views.oneOrThrow,
    list: views.page,
    watch: createVmWatch({ prisma, state, hosts, perform, follower, launcher, node, vmDir, log }),
    resizePool: createPoolSizer({ prisma, state, records, views, launcher, restart, remove: (vm) => act(vm, 'delete'), events, log }),

    /**
     * Records a VM and boots it. Its image is read (and checked ready) once and the runtime
     * fetched once, both handed to the launch; the answer is the VM as the launch left it.
     */
    async create(input: CreateVmInput): Promise<VmAccepted> {
      records.checkLimits(input);
      const image = await records.readyImageOrThrow(input.image);
      const known = { image, runtime: await launcher.requireRuntime() };
      let vm: VmRow;
      try {
        vm = await events.afterCommit((record) => prisma.$transaction((tx) => records.record({ tx, record }, image, input)));
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('vm_exists', `a machine or VM named ${input.name ?? 'like that'} exists; try again`);
        throw imageGone(err);
      }
      return launch(vm, { discard: true, from: ['stopped'] }, known);
    },

    /** Discards the writable layer and boots clean. */
    reset: async (id: string) => accepted(await records.getOrThrow(id), 'reset'),

    async start(id: string): Promise<VmAccepted> {
      const vm = await records.getOrThrow(id);
      if (vm.state === 'running' || vm.state === 'booting') return vm;
      return accepted(vm, 'start');
    },

    /** Stops the VM (here, or by its host); the VM as it is now. */
    async stop(id: string): Promise<VmActionResult> {
      const { handedOver } = await act(await records.getOrThrow(id), 'stop');
      return { vm: await views.oneOrThrow(id), handedOver };
    },

    /** Deletes the VM (here, or by its host: then the VM as it is now). */
    async remove(id: string): Promise<VmActionResult> {
      const { handedOver } = await act(await records.getOrThrow(id), 'delete');
      return { vm: handedOver ? await views.oneOrThrow(id) : null, handedOver };
    },

    /** The serial console: kernel messages, berth's init, and the image's command output. */
    async consoleLog(id: string, maxBytes = 256 * 1024): Promise<string> {
      records.ownedHere(await records.getOrThrow(id));
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
