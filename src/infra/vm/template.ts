// Template snapshots: an image booted once per VM shape (cpus, memory) up to the point
// where its guest init waits for an identity (guest-init.ts), then saved: the guest's RAM
// stays in a file (memory-backend-file, share=on), QEMU writes only the device state
// (x-ignore-shared: ~70 KB, ~10 ms). Clones (clone.ts) map that file copy-on-write.
//
// A template lives in <image dir>/templates/<cpus>cpu-<memory>mb/ (deleted with its image)
// and records the key it was made from: the image base (its inode, size and time), the
// guest init, the kernel and initramfs, QEMU's version and the machine's command line. A
// key that no longer matches means stale: it is made again. Making one is background work,
// one at a time, at a lower CPU priority; nothing waits for it (VMs cold-boot meanwhile).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { generateSshKeyPair } from '../ssh.js';
import { LogScanner, readTail } from './console-log.js';
import { GUEST_SAYS, guestInit, shellQuote, TEMPLATE_HOST_KEY, type GuestCommand } from './guest-init.js';
import { egressArgs, vmUserIds, type Egress } from './isolation.js';
import { launchQemu, qemuArgs, runningPid, stopVm, VM_FILES, type MachineSpec } from './machine.js';
import { ownerAlive, ownerTag, tagIn } from './process-owner.js';
import { connectQmp } from './qmp.js';
import type { VmRuntime, VmRuntimeProvider } from './runtime.js';
import { writeSeed } from './seed.js';
import { checkOverlay, copyUntrustedFile } from './template-results.js';
import { connectUnix } from './unix-socket.js';

const run = promisify(execFile);

/** Bumped when the way templates are made changes: older ones are then stale. */
const TEMPLATE_FORMAT = 1;
const POLL_MS = 100;
/** Saving writes only device state (RAM stays in its file): ~10 ms; far longer means QEMU is stuck. */
const SAVE_TIMEOUT_MS = 60_000;
/** The most berth takes of a template's device state (~70 KB) and of its overlay (what init wrote: a few MB). */
const MAX_STATE_BYTES = 64 << 20;
const MAX_OVERLAY_BYTES = 1 << 30;
/** A template that could not be made is tried again after this, doubled at each failure up to the most. */
const RETRY_FIRST_MS = 60_000;
const RETRY_MOST_MS = 3_600_000;
/** Where a template's QEMU saves (a directory of the VM user's, under the temporary directory). */
const SCRATCH_PREFIX = 'berth-template-';

export const TEMPLATE_FILES = {
  memory: 'memory',
  state: 'state',
  overlay: 'overlay.qcow2',
  seed: 'seed.tar',
  meta: 'template.json',
} as const;

/** What a template is made of: an image (its base and its command) in one VM shape, under this host's egress policy. */
export interface TemplateSource {
  imageId: string;
  base: string;
  command: GuestCommand | null;
  cpus: number;
  memoryMb: number;
  /** Part of the guest init (its resolver) and of QEMU's command line (restrict, -runas). */
  egress: Egress;
}

export interface Template {
  /** Tells this making of the template from a later one in the same directory. */
  id: string;
  dir: string;
  memory: string;
  state: string;
  overlay: string;
  seed: string;
}

interface Meta {
  id: string;
  key: string;
  madeAt: string;
  bootMs: number;
  snapshotMs: number;
  stateBytes: number;
}

export type TemplateLookup = { template: Template; reason?: undefined } | { template: null; reason: string };

export interface TemplatesDeps {
  runtime: VmRuntimeProvider;
  /** Where an image's templates live (inside the image's own directory). */
  dirOf(imageId: string): string;
  /** How long a template's boot may take before it counts as failed. */
  bootTimeoutMs: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** The machine a template describes, with placeholder paths: part of its key. */
function machineOf(source: TemplateSource, rt: VmRuntime): MachineSpec {
  return {
    dir: '/template',
    cpus: source.cpus,
    memoryMb: source.memoryMb,
    accel: rt.accel,
    kernel: rt.kernel,
    initramfs: rt.initramfs,
    disk: '/template/overlay.qcow2',
    base: source.base,
    seed: '/template/seed.tar',
    // A template is never reached: no port; clones get theirs forwarded on the bind address.
    sshBind: '127.0.0.1',
    sshPort: null,
    egress: source.egress,
    memory: { file: '/template/memory', shared: true },
    incoming: false,
  };
}

export async function templateKey(source: TemplateSource, rt: VmRuntime): Promise<string> {
  const base = await fs.stat(source.base);
  return createHash('sha256')
    .update(
      JSON.stringify({
        format: TEMPLATE_FORMAT,
        base: [base.dev, base.ino, base.size, base.mtimeMs],
        init: guestInit(source),
        boot: rt.fingerprint,
        qemu: rt.qemu,
        machine: await qemuArgs(machineOf(source, rt)),
      }),
    )
    .digest('hex');
}

const shapeName = (s: Pick<TemplateSource, 'cpus' | 'memoryMb'>) => `${s.cpus}cpu-${s.memoryMb}mb`;
const filesOf = (dir: string) => ({
  dir,
  memory: path.join(dir, TEMPLATE_FILES.memory),
  state: path.join(dir, TEMPLATE_FILES.state),
  overlay: path.join(dir, TEMPLATE_FILES.overlay),
  seed: path.join(dir, TEMPLATE_FILES.seed),
});

export function createTemplates(deps: TemplatesDeps) {
  const { runtime, log } = deps;
  const dirFor = (source: TemplateSource) => path.join(deps.dirOf(source.imageId), shapeName(source));
  /** Templates being made by this process, by directory. */
  const making = new Map<string, Promise<void>>();
  /** One at a time: on a small host, template boots would otherwise crowd out serving. */
  let queue: Promise<void> = Promise.resolve();
  const abort = new AbortController();
  /** Templates that could not be made, by directory: not tried again with the same key before `retryAt`. */
  const failures = new Map<string, { key: string; count: number; retryAt: number; reason: string }>();

  async function readMeta(dir: string): Promise<Meta | null> {
    try {
      return JSON.parse(await fs.readFile(path.join(dir, TEMPLATE_FILES.meta), 'utf8')) as Meta;
    } catch {
      return null;
    }
  }

  const keyOf = async (source: TemplateSource) => templateKey(source, await runtime.get());

  /** The current template of `source`, whose key is `key`; or why there is none. */
  async function find(source: TemplateSource, key: string): Promise<TemplateLookup> {
    const dir = dirFor(source);
    const meta = await readMeta(dir);
    if (!meta) {
      if (making.has(dir)) return { template: null, reason: 'its snapshot is being made' };
      const failed = failures.get(dir);
      if (failed?.key === key) {
        const retryIn = Math.max(0, Math.round((failed.retryAt - Date.now()) / 1000));
        return { template: null, reason: `its snapshot could not be made (${failed.reason}); next try in ${retryIn} s` };
      }
      return { template: null, reason: 'no snapshot of this image and shape yet' };
    }
    if (meta.key !== key) return { template: null, reason: 'its snapshot is stale (the image, kernel, initramfs, guest init or QEMU changed)' };
    const t = { id: meta.id, ...filesOf(dir) };
    const [memory, state, overlay, seed] = await Promise.all(
      [t.memory, t.state, t.overlay, t.seed].map((f) =>
        fs.stat(f).then(
          (st) => st.size,
          () => -1,
        ),
      ),
    );
    if (memory !== source.memoryMb * 1048576 || state !== meta.stateBytes || overlay! <= 0 || seed! <= 0) {
      return { template: null, reason: 'its snapshot files are incomplete' };
    }
    return { template: t };
  }

  /**
   * Makes the template in the background unless it is there and current, or being made, or
   * failed with this same key a short while ago (a broken image is not booted every minute).
   */
  function ensure(source: TemplateSource): void {
    const dir = dirFor(source);
    if (making.has(dir) || abort.signal.aborted) return;
    const job = queue.then(() => attempt(source, dir));
    queue = job;
    making.set(
      dir,
      job.finally(() => making.delete(dir)),
    );
  }

  /** One try at making a template, its failure logged and remembered (never thrown: the queue goes on). */
  async function attempt(source: TemplateSource, dir: string): Promise<void> {
    const about = { image: source.imageId, shape: shapeName(source) };
    let key: string | null = null;
    try {
      if (abort.signal.aborted) return;
      key = await keyOf(source);
      const failed = failures.get(dir);
      if (failed?.key === key && Date.now() < failed.retryAt) return;
      if ((await find(source, key)).template) return;
      await sweepDir(path.dirname(dir));
      await make(source, dir, key);
      failures.delete(dir);
    } catch (err) {
      const reason = (err as Error).message;
      if (key === null || abort.signal.aborted) {
        log.warn({ ...about, err: reason }, 'making a VM template failed');
        return;
      }
      const previous = failures.get(dir);
      const count = previous?.key === key ? previous.count + 1 : 1;
      const retryInMs = Math.min(RETRY_FIRST_MS * 2 ** (count - 1), RETRY_MOST_MS);
      failures.set(dir, { key, count, retryAt: Date.now() + retryInMs, reason });
      log.warn({ ...about, err: reason, failures: count, retryInS: retryInMs / 1000 }, 'making a VM template failed; VMs of this image boot cold meanwhile');
    }
  }

  async function make(source: TemplateSource, dir: string, key: string): Promise<void> {
    const rt = await runtime.get();
    const owner = await ownerTag();
    await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
    // Named by its maker: a sweep tells a live maker's work from a dead one's (process-owner.ts).
    const work = `${path.dirname(dir)}/.making-${path.basename(dir)}-${owner}-${randomBytes(4).toString('hex')}`;
    await fs.mkdir(work, { mode: 0o700 });
    const started = performance.now();
    let pid: number | null = null;
    // What QEMU opens while saving, it opens as the user it runs as by then (berth-vm under
    // `internet`, isolation.ts): the device state (written by a command it runs) and the
    // disk (opened again, read-only, when saving ends). Both are made in a directory of that
    // user's, whence berth takes them.
    // Whatever QEMU (or another process of that user) leaves there is checked before it is taken (template-results.ts).
    const scratch = await fs.mkdtemp(path.join(os.tmpdir(), `${SCRATCH_PREFIX}${owner}-`));
    try {
      if (egressArgs(source.egress).runAs.length) {
        const { uid, gid } = await vmUserIds();
        await fs.chown(scratch, uid, gid);
      }
      const t = filesOf(work);
      const saving = { overlay: path.join(scratch, TEMPLATE_FILES.overlay), state: path.join(scratch, TEMPLATE_FILES.state) };
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', source.base, saving.overlay]);
      const hostKey = generateSshKeyPair('berth template key: trusted by nobody');
      await writeSeed(work, {
        init: { content: guestInit(source), mode: 0o755 },
        [TEMPLATE_HOST_KEY]: { content: hostKey.private, mode: 0o600 },
        [`${TEMPLATE_HOST_KEY}.pub`]: { content: `${hostKey.public}\n`, mode: 0o644 },
      });
      pid = await launchQemu({ ...machineOf(source, rt), dir: work, disk: saving.overlay, seed: t.seed, memory: { file: t.memory, shared: true } }, { nice: true });
      // Connected, the channel blocks the guest's read; unconnected, the read would return at once.
      const channel = await connectUnix(work, VM_FILES.identity, 5000);
      try {
        await waitForConsole(work, GUEST_SAYS.waiting, deps.bootTimeoutMs);
        const bootMs = performance.now() - started;
        const snapshotStarted = performance.now();
        const qmp = await connectQmp(work, VM_FILES.monitor);
        try {
          // A QEMU that stops answering, or berth closing, ends the save (QEMU is then killed, below).
          const step = untilDeadline(SAVE_TIMEOUT_MS, 'saving the snapshot');
          await step(qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] }));
          await step(qmp.execute('stop'));
          await step(qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(saving.state)}` }));
          for (;;) {
            const { status, 'error-desc': error } = await step(qmp.execute<{ status: string; 'error-desc'?: string }>('query-migrate'));
            if (status === 'completed') break;
            if (status === 'failed' || status === 'cancelled') throw new Error(`saving the snapshot failed: ${error ?? status}`);
            await step(sleep(5));
          }
          await step(qmp.execute('quit')).catch(() => {});
        } finally {
          qmp.close();
        }
        await stopVm(work, 5000, pid);
        await copyUntrustedFile(saving.state, t.state, MAX_STATE_BYTES);
        await copyUntrustedFile(saving.overlay, t.overlay, MAX_OVERLAY_BYTES);
        await checkOverlay(t.overlay, source.base);
        const meta: Meta = {
          id: randomBytes(8).toString('hex'),
          key,
          madeAt: new Date().toISOString(),
          bootMs: Math.round(bootMs),
          snapshotMs: Math.round(performance.now() - snapshotStarted),
          stateBytes: (await fs.stat(t.state)).size,
        };
        // Clones only read these. The memory file stays writable: QEMU 7.2 opens it read-write
        // even for a private mapping (a healthy QEMU never writes to it; one taken over by its
        // guest could: README, "A limit of QEMU 7.2").
        for (const f of [t.state, t.overlay, t.seed]) await fs.chmod(f, 0o444);
        for (const f of await fs.readdir(work)) if (!Object.values(TEMPLATE_FILES).includes(f as never)) await fs.rm(path.join(work, f), { force: true });
        await fs.writeFile(path.join(work, TEMPLATE_FILES.meta), JSON.stringify(meta));
        // Clones running from the previous template keep its files open; unlinking is safe.
        await fs.rm(dir, { recursive: true, force: true });
        await fs.rename(work, dir);
        log.info({ image: source.imageId, shape: shapeName(source), bootMs: meta.bootMs, snapshotMs: meta.snapshotMs }, 'made a VM template');
      } finally {
        channel.destroy();
      }
    } finally {
      await fs.rm(scratch, { recursive: true, force: true });
      // By its pid: the directory may be gone (its image deleted meanwhile).
      await stopVm(work, 0, pid);
      await fs.rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Whether work named with its maker's tag (process-owner.ts) was left by a process that is
   * gone; work named before tags existed, by its age (older than any making can take).
   */
  async function abandoned(dir: string): Promise<boolean> {
    const tag = tagIn(path.basename(dir));
    if (tag) return !(await ownerAlive(tag));
    const st = await fs.lstat(dir).catch(() => null);
    return st !== null && Date.now() - st.mtimeMs > deps.bootTimeoutMs + 60_000;
  }

  /** Templates left half-made by a berth process that stopped: their QEMU (which may still run, waiting) is stopped and their work removed. */
  async function sweepDir(parent: string): Promise<void> {
    const entries = (await fs.readdir(parent).catch(() => [])).filter((d) => d.startsWith('.making-') || d.startsWith('.adopting-'));
    for (const entry of entries) {
      const dir = path.join(parent, entry);
      if (!(await abandoned(dir))) continue;
      // Only a process whose command line names this directory's pid file (machine.ts).
      await stopVm(dir, 0);
      await fs.rm(dir, { recursive: true, force: true });
      log.info({ dir }, 'removed a template left half-made');
    }
  }

  /** Scratch directories of makings that never finished (other berth processes' live ones stay). */
  async function sweepScratch(): Promise<void> {
    const tmp = os.tmpdir();
    for (const entry of (await fs.readdir(tmp).catch(() => [])).filter((d) => d.startsWith(SCRATCH_PREFIX))) {
      const dir = path.join(tmp, entry);
      if (!(await fs.lstat(dir).then((st) => st.isDirectory(), () => false)) || !(await abandoned(dir))) continue;
      await fs.rm(dir, { recursive: true, force: true });
      log.info({ dir }, 'removed the scratch directory of a template left half-made');
    }
  }

  /** A deadline (and berth closing) for each step of a piece of work: `step(promise)` rejects once either comes. */
  function untilDeadline(timeoutMs: number, what: string) {
    const deadline = Date.now() + timeoutMs;
    return <T>(work: Promise<T>): Promise<T> => {
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      return Promise.race([
        work,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(new Error('berth is closing'));
          if (abort.signal.aborted) return onAbort();
          abort.signal.addEventListener('abort', onAbort, { once: true });
          timer = setTimeout(() => reject(new Error(`${what} took longer than ${Math.round(timeoutMs / 1000)} s`)), Math.max(0, deadline - Date.now()));
        }),
      ]).finally(() => {
        clearTimeout(timer);
        abort.signal.removeEventListener('abort', onAbort!);
      });
    };
  }

  async function waitForConsole(dir: string, line: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const file = path.join(dir, VM_FILES.console);
    const scanner = new LogScanner(file);
    const tail = async () => (await readTail(file, 4096)).trim().split(/\r?\n/).slice(-3).join(' | ');
    for (;;) {
      if (abort.signal.aborted) throw new Error('berth is closing');
      const text = await scanner.next();
      if (text.includes(line)) return;
      // A guest that cannot go on says so: no need to wait out the timeout (and hold the queue).
      const failed = [GUEST_SAYS.sshdFailed, GUEST_SAYS.badIdentity].find((said) => text.includes(said));
      if (failed) throw new Error(`the template's guest said "${failed}" (console: ${await tail()})`);
      if ((await runningPid(dir)) === null) throw new Error(`the template's QEMU exited while booting (console: ${await tail()})`);
      if (Date.now() > deadline) throw new Error(`the template did not boot within ${Math.round(timeoutMs / 1000)} s (console: ${await tail()})`);
      await sleep(POLL_MS);
    }
  }

  return {
    /** The current template of `source`, or why there is none. */
    lookup: async (source: TemplateSource) => find(source, await keyOf(source)),
    ensure,

    /** Removes what makings by berth processes that are gone left behind: in these images' template directories, and their scratch directories. */
    async sweep(imageIds: string[]): Promise<void> {
      for (const id of imageIds) await sweepDir(deps.dirOf(id));
      await sweepScratch();
    },

    /**
     * An image whose base is another's (a hard link: the same engine image) takes that
     * image's templates too: the same files, linked, but for the overlay, whose backing file
     * names its own image's base. Their keys still match (same base inode, same command).
     */
    async adopt(fromImageId: string, toImageId: string, base: string): Promise<void> {
      const from = deps.dirOf(fromImageId);
      const shapes = (await fs.readdir(from).catch(() => [])).filter((d) => !d.startsWith('.'));
      for (const shape of shapes) {
        const meta = await readMeta(path.join(from, shape));
        if (!meta) continue;
        const src = filesOf(path.join(from, shape));
        const dir = path.join(deps.dirOf(toImageId), shape);
        const work = `${path.dirname(dir)}/.adopting-${shape}-${await ownerTag()}-${randomBytes(4).toString('hex')}`;
        await fs.mkdir(work, { recursive: true, mode: 0o700 });
        try {
          const t = filesOf(work);
          for (const f of ['memory', 'state', 'seed'] as const) await fs.link(src[f], t[f]);
          await fs.copyFile(src.overlay, t.overlay);
          await fs.chmod(t.overlay, 0o600);
          await run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-F', 'raw', '-b', base, t.overlay]);
          await fs.chmod(t.overlay, 0o444);
          await fs.writeFile(path.join(work, TEMPLATE_FILES.meta), JSON.stringify({ ...meta, id: randomBytes(8).toString('hex') }));
          await fs.rm(dir, { recursive: true, force: true });
          await fs.rename(work, dir);
        } catch (err) {
          log.warn({ from: fromImageId, to: toImageId, shape, err: (err as Error).message }, 'could not take over a VM template');
        } finally {
          await fs.rm(work, { recursive: true, force: true });
        }
      }
    },

    /** A restore from this template failed: it is removed (unless made again meanwhile), to be made anew. */
    async discard(template: Template): Promise<void> {
      if ((await readMeta(template.dir))?.id === template.id) await fs.rm(template.dir, { recursive: true, force: true });
    },

    /** Stops making templates (their QEMUs are stopped and their work removed). */
    async close(): Promise<void> {
      abort.abort();
      await Promise.allSettled([...making.values()]);
    },
  };
}

export type Templates = ReturnType<typeof createTemplates>;

