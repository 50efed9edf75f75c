// VMs: QEMU microvms booted from an image's read-only base, each with its own writable
// overlay, its own SSH host key (pinned) and its own root key (sealed, the machine's
// credential). Every VM is a machine of the pool (type `vm`, tag `image=<name>`); the
// machine is `available` only while the VM runs and answers SSH with its pinned key.
//
// QEMU runs daemonized, so VMs outlive a berth restart; the watch (start-up and every
// BERTH_VM_WATCH_SECONDS) re-adopts them, follows boots to `running`, and marks VMs whose
// QEMU died `failed` with their machine `offline`. VMs belong to the host (`node`) that
// booted them: only berth processes on that host touch their QEMU.
//
// State changes are conditional updates on the row, so two requests (or two processes on
// one host) cannot both stop, start or reset a VM; the machine leaves the pool by a
// conditional update too, so a VM is never taken from under a reservation.
import { isUniqueViolation } from '../../infra/database.js';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Prisma, type Image, type Machine, type PrismaClient, type Vm } from '../../generated/prisma/client.js';
import { freePort, portIsFree } from '../../infra/ports.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { HostKeyMismatchError, generateSshKeyPair, parseHostKey, sshConnect } from '../../infra/ssh.js';
import { bootVm, runningPid, stopVm, type GuestCommand, type VmSpec } from '../../infra/vm/qemu.js';
import { LogScanner, readTail, trimLog } from '../../infra/vm/console-log.js';
import type { VmRuntimeProvider } from '../../infra/vm/runtime.js';
import { AppError } from '../../errors/app-error.js';
import { pageOf } from '../../infra/paging.js';

export type VmRow = Vm & { image: Pick<Image, 'id' | 'name'>; machine: Machine | null };
const withRefs = { image: { select: { id: true, name: true } }, machine: true } as const;

/** The machine's status reason while its VM boots; the watch frees machines that carry it. */
export const VM_BOOTING = 'vm booting';
const HOST = '127.0.0.1';
/** A launch not recorded with a QEMU pid within this time was interrupted. */
const LAUNCH_GRACE_MS = 60_000;
const SSH_POLL_MS = 200;
/** A VM's console log on disk is cut back to its newest half past this size (the API serves the last 256 KiB). */
export const CONSOLE_MAX_BYTES = 1024 * 1024;

export interface VmLimits {
  defaultCpus: number;
  defaultMemoryMb: number;
  maxCpus: number;
  maxMemoryMb: number;
  bootTimeoutMs: number;
}

export interface VmsDeps {
  prisma: PrismaClient;
  secretBox: SecretBox;
  runtime: VmRuntimeProvider;
  /** <data>/vms: one directory per VM (overlay, seed, console log, pid file). */
  dir: string;
  /** Where an image's ext4 base is. */
  imageBase(imageId: string): string;
  /** This host's name: VMs are managed only by processes on the host that runs them. */
  node: string;
  limits: VmLimits;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

export interface CreateVmInput {
  image: string;
  name?: string;
  cpus?: number;
  memory_mb?: number;
}

const notFound = () => new AppError('vm_not_found', 'no such VM');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The image was deleted under a request that was adding VMs to it. */
const imageGone = (err: unknown) =>
  err instanceof Prisma.PrismaClientKnownRequestError && ['P2003', 'P2025'].includes(err.code)
    ? new AppError('image_not_ready', 'the image was deleted meanwhile')
    : err;

function guestCommand(config: unknown): GuestCommand | null {
  const c = (config ?? {}) as { entrypoint?: string[] | null; cmd?: string[] | null; env?: string[]; user?: string | null; workdir?: string | null };
  const argv = [...(c.entrypoint ?? []), ...(c.cmd ?? [])];
  return argv.length ? { argv, env: c.env ?? [], user: c.user ?? null, workdir: c.workdir ?? null } : null;
}

export function createVmsService(deps: VmsDeps) {
  const { prisma, secretBox, runtime, node, limits, log } = deps;
  const vmDir = (id: string) => path.join(deps.dir, id);
  /** Boots this process is following. */
  const following = new Map<string, AbortController>();
  /**
   * Launches in progress here, from the state change until QEMU has started: the watch
   * leaves them alone, and stopping or deleting waits for them.
   */
  const starting = new Map<string, Promise<void>>();
  const background = new Set<Promise<void>>();
  let closed = false;

  const inBackground = (work: Promise<void>) => {
    background.add(work);
    void work.finally(() => background.delete(work));
  };

  async function get(id: string): Promise<VmRow> {
    const vm = await prisma.vm.findUnique({ where: { id }, include: withRefs });
    if (!vm) throw notFound();
    return vm;
  }

  function ownedHere(vm: Vm) {
    if (vm.node !== node) {
      throw new AppError('vm_on_other_host', `${vm.name} runs on ${vm.node}; ask a berth process on that host`);
    }
  }

  async function readyImage(ref: string): Promise<Image> {
    const image = await prisma.image.findFirst({ where: { OR: [{ id: ref }, { name: ref }] } });
    if (!image) throw new AppError('image_not_found', `no image ${ref}`);
    if (image.status !== 'ready') throw new AppError('image_not_ready', `the image ${image.name} is ${image.status}; VMs boot only from a ready image`);
    return image;
  }

  const consolePath = (id: string) => path.join(vmDir(id), 'console.log');

  /** The last lines QEMU's serial console got, for failure reasons (admins see them). */
  async function consoleTail(id: string, lines = 3): Promise<string> {
    const text = (await readTail(consolePath(id), 4096)).trim();
    return text ? ` (console: ${text.split('\n').slice(-lines).join(' | ').slice(-300)})` : '';
  }

  async function markFailed(vm: Pick<Vm, 'id' | 'machineId' | 'bootStartedAt'>, reason: string): Promise<void> {
    const { count } = await prisma.vm.updateMany({
      where: { id: vm.id, state: { in: ['booting', 'running'] }, bootStartedAt: vm.bootStartedAt },
      data: { state: 'failed', stateReason: reason.slice(0, 1024), pid: null },
    });
    if (count === 0) return;
    log.warn({ vm: vm.id, reason }, 'a VM failed');
    // Its machine is out of the pool, reserved or not; a reservation keeps its claim and
    // its release resets the VM.
    if (vm.machineId) {
      await prisma.machine.update({ where: { id: vm.machineId }, data: { status: 'offline', statusReason: `vm failed: ${reason}`.slice(0, 255) } });
    }
  }

  async function markRunning(vm: Pick<Vm, 'id' | 'machineId' | 'bootStartedAt'>): Promise<void> {
    const bootMs = vm.bootStartedAt ? Date.now() - vm.bootStartedAt.getTime() : null;
    const { count } = await prisma.vm.updateMany({
      where: { id: vm.id, state: 'booting', bootStartedAt: vm.bootStartedAt },
      data: { state: 'running', bootMs },
    });
    if (count === 1 && vm.machineId) await returnToPool(vm.machineId);
  }

  /** A booted VM's machine joins the pool, unless something else took it out meanwhile. */
  const returnToPool = (machineId: string) =>
    prisma.machine.updateMany({
      where: { id: machineId, status: 'offline', statusReason: VM_BOOTING, reservationId: null, vm: { is: { state: 'running' } } },
      data: { status: 'available', statusReason: null, lastCheckedAt: new Date() },
    });

  /**
   * Takes the VM's machine out of the pool for `reason`, unless a reservation holds it.
   * Conditional: an allocation cannot claim it afterwards, nor can this run after one did.
   */
  async function withdraw(vm: VmRow, reason: string): Promise<void> {
    if (!vm.machineId) return;
    const { count } = await prisma.machine.updateMany({
      where: { id: vm.machineId, status: { not: 'reserved' }, reservationId: null },
      data: { status: 'offline', statusReason: reason },
    });
    if (count === 0) throw new AppError('vm_reserved', `${vm.name} is reserved; release its reservation first`);
  }

  /** Follows a boot until SSH answers with the pinned host key, QEMU dies, or time runs out. */
  async function follow(vm: VmRow): Promise<void> {
    if (closed || (following.has(vm.id) && !following.get(vm.id)!.signal.aborted)) return;
    const abort = new AbortController();
    following.set(vm.id, abort);
    const dir = vmDir(vm.id);
    const deadline = (vm.bootStartedAt?.getTime() ?? Date.now()) + limits.bootTimeoutMs;
    const privateKey = vm.machine ? secretBox.open(vm.machine.credential) : null;
    const consoleScan = new LogScanner(consolePath(vm.id));
    let sshdStarted = false;
    try {
      while (!abort.signal.aborted) {
        if (runningPid(dir) === null) {
          await markFailed(vm, `QEMU exited while booting${await consoleTail(vm.id)}`);
          return;
        }
        if (Date.now() > deadline) {
          await stopVm(dir);
          await markFailed(vm, `no SSH within ${Math.round(limits.bootTimeoutMs / 1000)} s of boot${await consoleTail(vm.id)}`);
          return;
        }
        // Our init says when sshd is up; knocking earlier only costs the guest CPU.
        const text = await consoleScan.next();
        if (text.includes('berth-init: sshd failed')) {
          await stopVm(dir, 0);
          await markFailed(vm, `sshd did not start in the VM${await consoleTail(vm.id, 4)}`);
          return;
        }
        sshdStarted ||= text.includes('berth-init: sshd started');
        if (privateKey && sshdStarted) {
          try {
            const session = await sshConnect(
              { host: HOST, port: vm.sshPort, username: 'root', privateKey, hostKeyFingerprint: vm.hostKeyFingerprint },
              { connectTimeoutMs: 5000, commandTimeoutMs: 10_000 },
            );
            try {
              await session.runScript('true', []);
            } finally {
              session.close();
            }
            await markRunning(vm);
            return;
          } catch (err) {
            if (err instanceof HostKeyMismatchError) {
              await stopVm(dir);
              await markFailed(vm, `something else answers on its SSH port: ${err.message}`);
              return;
            }
          }
        }
        await sleep(SSH_POLL_MS);
      }
    } finally {
      if (following.get(vm.id) === abort) following.delete(vm.id);
    }
  }

  /**
   * Boots the VM (fresh overlay and a new host key when `discard`), after moving it to
   * `booting` from one of `from` (and from the boot that was read: two resets at once do
   * not both go). Answers once the old QEMU is gone and the state is recorded; the new QEMU
   * starts, and is followed, in the background.
   */
  async function launch(vm: VmRow, opts: { discard: boolean; from: Vm['state'][] }): Promise<VmRow> {
    ownedHere(vm);
    const image = await prisma.image.findUniqueOrThrow({ where: { id: vm.imageId } });
    if (image.status !== 'ready') throw new AppError('image_not_ready', `the image ${image.name} is ${image.status}`);
    const rt = await requireRuntime();
    const bootStartedAt = new Date();
    const { count } = await prisma.vm.updateMany({
      where: { id: vm.id, state: { in: opts.from }, bootStartedAt: vm.bootStartedAt },
      data: { state: 'booting', stateReason: null, pid: null, bootStartedAt, bootMs: null },
    });
    if (count === 0) {
      const now = await get(vm.id);
      throw new AppError('vm_state', `${vm.name} is ${now.state}${now.state === vm.state ? ' (changed meanwhile)' : ''}`);
    }
    following.get(vm.id)?.abort();
    let booting: VmRow = { ...vm, state: 'booting', bootStartedAt, pid: null, bootMs: null, stateReason: null };
    const dir = vmDir(vm.id);
    const previous = starting.get(vm.id);
    // Before answering: once this returns, nothing the VM's last user wrote exists. What
    // is discarded needs no clean shutdown: a reset kills QEMU outright.
    const cleared = (async () => {
      await previous;
      await stopVm(dir, opts.discard ? 0 : 5000);
      if (opts.discard) {
        fs.rmSync(path.join(dir, 'overlay.qcow2'), { force: true });
        // A new host key too: the last user, root inside, could read the old one.
        booting = { ...booting, ...(await newHostKey(vm)) };
      }
    })().catch((err: Error) => {
      throw new Error(`could not stop the old QEMU: ${err.message}`);
    });
    const start = cleared.then(async () => {
      try {
        // A stopped VM's port may have been taken meanwhile: pick another.
        if (!(await portIsFree(booting.sshPort))) {
          const sshPort = await prisma.$transaction((tx) => allocatePort(tx));
          await prisma.vm.update({ where: { id: vm.id }, data: { sshPort } });
          if (vm.machineId) await prisma.machine.update({ where: { id: vm.machineId }, data: { port: sshPort } });
          booting = { ...booting, sshPort };
        }
        const pid = await bootVm({
          dir,
          name: vm.name,
          kernel: rt.kernel,
          initramfs: rt.initramfs,
          base: deps.imageBase(vm.imageId),
          sshPort: booting.sshPort,
          cpus: vm.cpus,
          memoryMb: vm.memoryMb,
          accel: rt.accel,
          hostKey: { private: secretBox.open(booting.hostKeySealed), public: booting.hostKeyPublic },
          authorizedKeys: [vm.rootKeyPublic],
          command: guestCommand(image.config),
        });
        const recorded = await prisma.vm.updateMany({ where: { id: vm.id, bootStartedAt, state: 'booting' }, data: { pid } });
        // Stopped, deleted or relaunched while QEMU was starting: this QEMU is nobody's.
        if (recorded.count === 0) {
          await stopVm(dir);
          return false;
        }
        return true;
      } catch (err) {
        throw new Error(`QEMU did not start: ${(err as Error).message}`);
      }
    });
    // Waiters only need to know it settled; its failure is recorded below.
    const started = start.then(() => {}, () => {});
    starting.set(vm.id, started);
    inBackground(
      start
        .finally(() => {
          if (starting.get(vm.id) === started) starting.delete(vm.id);
        })
        .then(
          (ours) => (ours ? follow(booting) : undefined),
          (err: Error) => markFailed(booting, err.message),
        )
        .catch((err: unknown) => log.error({ err, vm: vm.id }, 'launching a VM failed')),
    );
    await cleared;
    return get(vm.id);
  }

  /** Gives the VM a new SSH host key, pinned on its machine. */
  async function newHostKey(vm: VmRow): Promise<Pick<Vm, 'hostKeyFingerprint' | 'hostKeyPublic' | 'hostKeySealed'>> {
    const key = generateSshKeyPair();
    const fields = { hostKeyFingerprint: parseHostKey(key.public)!, hostKeyPublic: key.public.trim(), hostKeySealed: secretBox.seal(key.private) };
    await prisma.vm.update({ where: { id: vm.id }, data: fields });
    if (vm.machineId) await prisma.machine.update({ where: { id: vm.machineId }, data: { hostKeyFingerprint: fields.hostKeyFingerprint } });
    return fields;
  }

  const requireRuntime = () =>
    runtime.get().catch((err: Error) => {
      throw new AppError('vm_unavailable', `VMs cannot boot on this host: ${err.message}`);
    });

  /** A free port no VM of this host has recorded (stopped VMs keep theirs). */
  async function allocatePort(tx: Prisma.TransactionClient): Promise<number> {
    for (;;) {
      const port = await freePort();
      if (!(await tx.vm.findFirst({ where: { node, sshPort: port }, select: { id: true } }))) return port;
    }
  }

  /** Records a new VM and its machine (not yet booted). */
  async function record(tx: Prisma.TransactionClient, image: Image, input: Omit<CreateVmInput, 'image'>): Promise<string> {
    const name = input.name ?? `${image.name.slice(0, 56)}-${randomBytes(3).toString('hex')}`;
    if (await tx.machine.findUnique({ where: { name }, select: { id: true } })) {
      throw new AppError('vm_exists', `a machine or VM named ${name} exists`);
    }
    const hostKey = generateSshKeyPair();
    const rootKey = generateSshKeyPair(`berth root key for ${name}`);
    const fingerprint = parseHostKey(hostKey.public)!;
    const sshPort = await allocatePort(tx);
    const machine = await tx.machine.create({
      data: {
        name,
        host: HOST,
        port: sshPort,
        username: 'root',
        credentialKind: 'private_key',
        credential: secretBox.seal(rootKey.private),
        hostKeyFingerprint: fingerprint,
        type: 'vm',
        tags: { image: image.name },
        // The VM is reset after every reservation: sudo cannot leave anything behind.
        allowSudo: true,
        status: 'offline',
        statusReason: VM_BOOTING,
      },
    });
    const vm = await tx.vm.create({
      data: {
        name,
        imageId: image.id,
        machineId: machine.id,
        state: 'stopped',
        node,
        cpus: input.cpus ?? limits.defaultCpus,
        memoryMb: input.memory_mb ?? limits.defaultMemoryMb,
        sshPort,
        hostKeyFingerprint: fingerprint,
        hostKeyPublic: hostKey.public.trim(),
        hostKeySealed: secretBox.seal(hostKey.private),
        rootKeyPublic: rootKey.public.trim(),
      },
    });
    return vm.id;
  }

  function checkLimits(input: { cpus?: number; memory_mb?: number }) {
    if (input.cpus !== undefined && input.cpus > limits.maxCpus) {
      throw new AppError('vm_limits_exceeded', `cpus must be at most ${limits.maxCpus} on this host`);
    }
    if (input.memory_mb !== undefined && input.memory_mb > limits.maxMemoryMb) {
      throw new AppError('vm_limits_exceeded', `memory_mb must be at most ${limits.maxMemoryMb} on this host`);
    }
  }

  /** Records the VM stopped, then stops its QEMU (waiting for one still starting). */
  async function halt(id: string, reason: string | null): Promise<void> {
    await prisma.vm.update({ where: { id }, data: { state: 'stopped', stateReason: reason, pid: null } });
    following.get(id)?.abort();
    await starting.get(id);
    await stopVm(vmDir(id));
  }

  /** Stops QEMU and forgets the VM: its machine, its directory, its row. */
  async function destroy(vm: VmRow): Promise<void> {
    await halt(vm.id, null);
    await prisma.$transaction([
      prisma.vm.delete({ where: { id: vm.id } }),
      ...(vm.machineId ? [prisma.machine.deleteMany({ where: { id: vm.machineId, reservationId: null } })] : []),
    ]);
    fs.rmSync(vmDir(vm.id), { recursive: true, force: true });
  }

  return {
    get,

    async list(q: { image?: string; state?: Vm['state']; limit: number; cursor?: string }) {
      const rows = await prisma.vm.findMany({
        where: {
          ...(q.state && { state: q.state }),
          ...(q.image && { image: { OR: [{ id: q.image }, { name: q.image }] } }),
          ...(q.cursor && { name: { gt: q.cursor } }),
        },
        include: withRefs,
        orderBy: { name: 'asc' },
        take: q.limit + 1,
      });
      return pageOf(rows, q.limit, (v) => v.name);
    },

    async create(input: CreateVmInput): Promise<VmRow> {
      checkLimits(input);
      const image = await readyImage(input.image);
      await requireRuntime();
      let id: string;
      try {
        id = await prisma.$transaction((tx) => record(tx, image, input));
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('vm_exists', `a machine or VM named ${input.name ?? 'like that'} exists; try again`);
        throw imageGone(err);
      }
      return launch(await get(id), { discard: true, from: ['stopped'] });
    },

    /** Discards the writable layer and boots clean. */
    async reset(id: string): Promise<VmRow> {
      const vm = await get(id);
      ownedHere(vm);
      await withdraw(vm, VM_BOOTING);
      return launch(vm, { discard: true, from: ['booting', 'running', 'stopped', 'failed'] });
    },

    async start(id: string): Promise<VmRow> {
      const vm = await get(id);
      ownedHere(vm);
      if (vm.state === 'running' || vm.state === 'booting') return vm;
      await withdraw(vm, VM_BOOTING);
      return launch(vm, { discard: false, from: ['stopped', 'failed'] });
    },

    async stop(id: string): Promise<VmRow> {
      const vm = await get(id);
      ownedHere(vm);
      await withdraw(vm, 'vm stopped');
      await halt(id, 'stopped by an admin');
      return get(id);
    },

    async remove(id: string): Promise<void> {
      const vm = await get(id);
      ownedHere(vm);
      await withdraw(vm, 'vm being deleted');
      await destroy(vm);
    },

    /** The serial console: kernel messages, berth's init, and the image's command output. */
    async consoleLog(id: string, maxBytes = 256 * 1024): Promise<string> {
      const vm = await get(id);
      ownedHere(vm);
      return readTail(consolePath(id), maxBytes);
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
      await prisma.machine.updateMany({
        where: { id: machine.id, reservationId },
        data: { status: 'offline', statusReason: VM_BOOTING, reservationId: null },
      });
      return true;
    },

    /**
     * Keeps exactly `size` VMs of the image: boots more, or deletes unreserved ones (failed,
     * stopped and booting ones first). 409 when that would take a reserved VM.
     */
    async resizePool(imageId: string, size: number): Promise<{ image: Image; vms: VmRow[] }> {
      const image = await prisma.image.findUnique({ where: { id: imageId } });
      if (!image) throw new AppError('image_not_found', 'no such image');
      if (size > 0 && image.status !== 'ready') throw new AppError('image_not_ready', `the image ${image.name} is ${image.status}`);
      const order: Record<Vm['state'], number> = { failed: 0, stopped: 1, booting: 2, running: 3 };
      const { created, removed } = await prisma
        .$transaction(async (tx) => {
        // One resize of an image at a time, in every process.
        await tx.$queryRaw`SELECT id FROM images WHERE id = ${imageId} FOR UPDATE`;
        const vms = await tx.vm.findMany({ where: { imageId }, include: withRefs });
        const removed: VmRow[] = [];
        const created: string[] = [];
        if (vms.length > size) {
          const free = vms.filter((v) => !v.machine?.reservationId && v.machine?.status !== 'reserved').sort((a, b) => order[a.state] - order[b.state]);
          const need = vms.length - size;
          if (free.length < need) {
            throw new AppError('pool_reserved', `${vms.length - free.length} VM(s) of ${image.name} are reserved; the pool cannot shrink below that`, {
              reserved: vms.length - free.length,
            });
          }
          for (const v of free.slice(0, need)) {
            if (v.node !== node) throw new AppError('vm_on_other_host', `${v.name} runs on ${v.node}; resize from a berth process there`);
            const { count } = v.machineId
              ? await tx.machine.updateMany({ where: { id: v.machineId, status: { not: 'reserved' }, reservationId: null }, data: { status: 'offline', statusReason: 'vm being deleted' } })
              : { count: 1 };
            if (count === 0) throw new AppError('pool_reserved', `${v.name} was reserved meanwhile; try again`);
            removed.push(v);
          }
        }
        for (let i = vms.length; i < size; i++) created.push(await record(tx, image, {}));
        await tx.image.update({ where: { id: imageId }, data: { poolSize: size } });
        return { created, removed };
      })
        .catch((err: unknown) => {
          throw imageGone(err);
        });
      await Promise.all(removed.map((v) => destroy(v)));
      for (const id of created) await launch(await get(id), { discard: true, from: ['stopped'] });
      // Members that are down come back: the pool means running VMs.
      const members = await prisma.vm.findMany({ where: { imageId }, include: withRefs });
      for (const v of members) {
        if ((v.state === 'failed' || v.state === 'stopped') && v.node === node && !v.machine?.reservationId) {
          // One that cannot come back now (reserved meanwhile, QEMU refusing) stays as it is;
          // the resize itself has done its part.
          await withdraw(v, VM_BOOTING)
            .then(() => launch(v, { discard: v.state === 'failed', from: [v.state] }))
            .catch((err: Error) => log.warn({ vm: v.id, err: err.message }, 'could not restart a pool member'));
        }
      }
      return { image: (await prisma.image.findUniqueOrThrow({ where: { id: imageId } })), vms: await prisma.vm.findMany({ where: { imageId }, include: withRefs, orderBy: { name: 'asc' } }) };
    },

    /**
     * Start-up and every tick: follow boots nobody here follows (a restart re-adopts them),
     * mark VMs whose QEMU is gone failed, and let booted VMs' machines into the pool.
     */
    async watch(): Promise<void> {
      const vms = await prisma.vm.findMany({ where: { node, state: { in: ['booting', 'running'] } }, include: withRefs });
      for (const vm of vms) {
        if (starting.has(vm.id)) continue;
        const pid = runningPid(vmDir(vm.id));
        // The guest writes its console as fast as it likes; only its newest part is kept.
        if (pid !== null) await trimLog(consolePath(vm.id), CONSOLE_MAX_BYTES);
        if (pid === null) {
          const launchedRecently = vm.pid === null && vm.bootStartedAt && Date.now() - vm.bootStartedAt.getTime() < LAUNCH_GRACE_MS;
          if (!launchedRecently) await markFailed(vm, vm.pid === null ? 'the boot was interrupted (berth stopped)' : `QEMU exited${await consoleTail(vm.id)}`);
        } else if (vm.state === 'booting') {
          if (vm.pid !== pid) await prisma.vm.updateMany({ where: { id: vm.id, bootStartedAt: vm.bootStartedAt }, data: { pid } });
          inBackground(follow(vm).catch((err: unknown) => log.error({ err, vm: vm.id }, 'following a boot failed')));
        } else if (vm.machineId && vm.machine?.statusReason === VM_BOOTING) {
          await returnToPool(vm.machineId);
        }
      }
    },

    /** Stops following boots (the VMs keep running; the next process re-adopts them). */
    async close(): Promise<void> {
      closed = true;
      for (const abort of following.values()) abort.abort();
      await Promise.allSettled([...background]);
    },
  };
}

export type VmsService = ReturnType<typeof createVmsService>;
