// Launching a VM's QEMU, and stopping it. A launch moves the VM to `booting` by a
// conditional update (from the states it names and from the boot that was read: two
// resets at once do not both go), answers once the old QEMU is gone and — for a reset —
// the writable layer and the host key are new, then starts QEMU and follows the boot in
// the background. QEMU starts as a clone of the image's template snapshot when there is a
// current one (start mode `restore`), else it boots cold, the reason logged
// (infra/vm/start.ts). Launches in progress are tracked until QEMU has started: the watch
// leaves them alone, and stopping or deleting waits for them. A launch raises `vm.changed`
// (started, or reset when it discards what an earlier boot left) once the VM is `booting`,
// and a halt once it is `stopped`.
import { createBackgroundWork } from '../../shared/background.js';
import type { EventBus } from '../../events/bus.js';
import type { Image, PrismaClient, Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import { portIsFree } from '../../infra/ports.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { imageCommand } from '../../infra/vm/guest-init.js';
import { discardVm, stopVm } from '../../infra/vm/qemu.js';
import type { VmRuntime, VmRuntimeProvider } from '../../infra/vm/runtime.js';
import type { StartSpec, Started } from '../../infra/vm/start.js';
import type { BootFollower } from './follow.js';
import type { VmNetwork, VmRow, VmsLog } from './model.js';
import type { VmRecords } from './records.js';

export interface LauncherDeps {
  prisma: PrismaClient;
  secretBox: SecretBox;
  runtime: VmRuntimeProvider;
  records: Pick<VmRecords, 'getOrThrow' | 'ownedHere' | 'newHostKey' | 'newPort'>;
  follower: Pick<BootFollower, 'follow' | 'markFailed' | 'abort'>;
  /** Starts a VM's QEMU: restored from its image's template snapshot, or booted cold (infra/vm/start.ts). */
  startVm(spec: StartSpec): Promise<Started>;
  /** Where an image's ext4 base is. */
  imageBase(imageId: string): string;
  vmDir(id: string): string;
  network: VmNetwork;
  events: Pick<EventBus, 'raise'>;
  log: VmsLog;
}

/** What the caller of a launch has read and checked already (a VM's creation): not read again. */
export interface LaunchReads {
  /** The VM's image, ready. */
  image: Image;
  runtime: VmRuntime;
}

export function createLauncher({ prisma, secretBox, runtime, records, follower, startVm, imageBase, vmDir, network, events, log }: LauncherDeps) {
  /** Launches in progress here, from the state change until QEMU has started. */
  const starting = new Map<string, Promise<void>>();
  /** Work that goes on after a request was answered (starting QEMU, following the boot); closing waits for it. */
  const background = createBackgroundWork(log);
  const inBackground = (work: Promise<void>) => background.track(work, 'VM work after its request');

  const requireRuntime = () =>
    runtime.get().catch((err: Error) => {
      throw new AppError('vm_unavailable', `VMs cannot boot on this host: ${err.message}`);
    });

  /** What a launch needs before it changes anything: the VM's image, ready, and this host's runtime. */
  async function readForLaunch(vm: Pick<Vm, 'imageId'>): Promise<LaunchReads> {
    const image = await prisma.image.findUniqueOrThrow({ where: { id: vm.imageId } });
    if (image.status !== 'ready') throw new AppError('image_not_ready', `the image ${image.name} is ${image.status}`);
    return { image, runtime: await requireRuntime() };
  }

  /** Starts QEMU for a VM in `booting`; null when the VM moved on meanwhile (that QEMU is stopped again). */
  async function startQemu(vm: VmRow, { image, runtime: rt }: LaunchReads, booting: VmRow): Promise<Started | null> {
    const dir = vmDir(vm.id);
    try {
      const started = await startVm({
        imageId: vm.imageId,
        dir,
        name: vm.name,
        kernel: rt.kernel,
        initramfs: rt.initramfs,
        base: imageBase(vm.imageId),
        sshBind: network.bind,
        sshPort: booting.sshPort,
        egress: network.egress,
        cpus: vm.cpus,
        memoryMb: vm.memoryMb,
        accel: rt.accel,
        hostKey: { private: secretBox.open(booting.hostKeySealed), public: booting.hostKeyPublic },
        authorizedKeys: [vm.rootKeyPublic],
        command: imageCommand(image.config),
      });
      const recorded = await prisma.vm.updateMany({
        where: { id: vm.id, bootStartedAt: booting.bootStartedAt, state: 'booting' },
        data: { pid: started.pid, startMode: started.mode },
      });
      // Stopped, deleted or relaunched while QEMU was starting: this QEMU is nobody's.
      if (recorded.count === 0) {
        await stopVm(dir);
        return null;
      }
      return started;
    } catch (err) {
      throw new Error(`QEMU did not start: ${(err as Error).message}`, { cause: err });
    }
  }

  return {
    /**
     * Boots the VM (a fresh writable layer and a new host key when `discard`) after moving
     * it to `booting` from one of `from`. Answers once the old QEMU is gone and the state
     * is recorded, with the VM as the launch left it (its machine as it was read); the new
     * QEMU starts, and is followed, in the background. Its image and the runtime are read
     * here unless the caller has them (`known`).
     */
    async launch(vm: VmRow, opts: { discard: boolean; from: Vm['state'][] }, known?: LaunchReads): Promise<VmRow> {
      records.ownedHere(vm);
      const reads = known ?? (await readForLaunch(vm));
      const bootStartedAt = new Date();
      const { count } = await prisma.vm.updateMany({
        where: { id: vm.id, state: { in: opts.from }, bootStartedAt: vm.bootStartedAt },
        data: { state: 'booting', stateReason: null, pid: null, bootStartedAt, bootMs: null, startMode: null },
      });
      if (count === 0) {
        const now = await records.getOrThrow(vm.id);
        throw new AppError('vm_state', `${vm.name} is ${now.state}${now.state === vm.state ? ' (changed meanwhile)' : ''}`);
      }
      // A VM's first boot is its start; a later one that discards what the last left is a reset.
      const change = opts.discard && vm.bootStartedAt !== null ? 'reset' : 'started';
      await events.raise('vm.changed', { vmId: vm.id, machineId: vm.machineId, name: vm.name, change, state: 'booting' });
      follower.abort(vm.id);
      let booting: VmRow = { ...vm, state: 'booting', bootStartedAt, pid: null, bootMs: null, startMode: null, stateReason: null };
      const dir = vmDir(vm.id);
      const previous = starting.get(vm.id);
      // Before answering: once this returns, nothing the VM's last user wrote exists. What
      // is discarded needs no clean shutdown: a reset kills QEMU outright.
      const cleared = (async () => {
        await previous;
        if (opts.discard) {
          await discardVm(dir);
          // A new host key too: the last user, root inside, could read the old one.
          booting = { ...booting, ...(await records.newHostKey(vm)) };
        } else {
          await stopVm(dir);
        }
      })().catch((err: Error) => {
        throw new Error(`could not stop the old QEMU: ${err.message}`);
      });
      const start = cleared.then(async () => {
        // A stopped VM's port may have been taken meanwhile: pick another.
        if (!(await portIsFree(booting.sshPort, network.bind))) booting = { ...booting, sshPort: await records.newPort(vm) };
        return startQemu(vm, reads, booting);
      });
      // Waiters only need to know it settled; its failure is recorded below.
      const started = start.then(
        () => {},
        () => {},
      );
      starting.set(vm.id, started);
      inBackground(
        start
          .finally(() => {
            if (starting.get(vm.id) === started) starting.delete(vm.id);
          })
          .then(
            // A restore answered once the guest said its sshd listens: the follower need not wait for that again.
            (ours) => (ours ? follower.follow(booting, { sshdListening: ours.mode === 'restore' }) : undefined),
            (err: Error) => follower.markFailed(booting, err.message),
          )
          .catch((err: unknown) => log.error({ err, vm: vm.id }, 'launching a VM failed')),
      );
      await cleared;
      return booting;
    },

    /**
     * Records the VM stopped, then stops its QEMU (waiting for one still starting). Raised
     * only when it was not stopped already (a stopped VM being deleted, a second stop).
     */
    async halt(vm: Pick<VmRow, 'id' | 'machineId' | 'name'>, reason: string | null): Promise<void> {
      const { id } = vm;
      const stopped = { state: 'stopped' as const, stateReason: reason, pid: null };
      const { count } = await prisma.vm.updateMany({ where: { id, state: { not: 'stopped' } }, data: stopped });
      if (count === 1) await events.raise('vm.changed', { vmId: id, machineId: vm.machineId, name: vm.name, change: 'stopped', state: 'stopped' });
      else await prisma.vm.updateMany({ where: { id }, data: stopped });
      follower.abort(id);
      await starting.get(id);
      await stopVm(vmDir(id));
    },

    /** Whether a launch of `id` is under way here (the watch leaves it alone). */
    isStarting: (id: string) => starting.has(id),

    /** Runs `work` after the answer, tracked until it ends. */
    inBackground,

    /** Waits for the background work (the VMs keep running; the next process re-adopts them). */
    async close(): Promise<void> {
      await background.settled();
    },

    requireRuntime,
  };
}

export type Launcher = ReturnType<typeof createLauncher>;
