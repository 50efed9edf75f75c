// The QEMU command line of a VM, in one place: a cold boot, a template being made and a
// clone restored from it must describe the same machine (same devices, in the same order)
// or the restore fails. Everything QEMU names lives in the VM's directory: QEMU runs in
// it and binds its sockets by relative name (see unix-socket.ts). Under BERTH_VM_EGRESS=
// internet QEMU drops root for berth-vm once its command line is set up (isolation.ts):
// every file it names is opened before that. What a clone opens later — its template's
// device state, and its disk, which QEMU opens again when a restore ends — is handed in
// open, as file descriptors (`handOver`), so that nothing of berth's data directory has to
// be open to that user (a template saves through a directory of that user's, template.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { IDENTITY_PORT } from './guest-init.js';
import { egressArgs, type Egress } from './isolation.js';
import type { Qmp } from './qmp.js';

export type Accel = 'kvm' | 'tcg';

/** What a VM's directory holds while QEMU runs. */
export const VM_FILES = {
  console: 'console.log',
  pid: 'qemu.pid',
  /** QEMU's monitor (QMP). */
  monitor: 'qmp.sock',
  /** The identity channel: a virtio serial port the guest waits on (guest-init.ts). */
  identity: 'identity.sock',
} as const;

export interface MachineSpec {
  /** The VM's directory (console log, pid file, sockets). */
  dir: string;
  cpus: number;
  memoryMb: number;
  accel: Accel;
  kernel: string;
  initramfs: string;
  /** The VM's writable disk: a qcow2 overlay over the image's base. */
  disk: string;
  /**
   * The image's read-only base under it, given on the command line: QEMU then ignores the
   * backing file the overlay's header names (a QEMU running as berth-vm can rewrite that
   * header; the next start, as root, would otherwise open whatever host file it names).
   */
  base: string;
  /** The read-only seed disk (a tar the initramfs unpacks into /berth). */
  seed: string;
  /** The host address SSH is forwarded on (BERTH_VM_BIND). */
  sshBind: string;
  /**
   * The port of `sshBind` forwarded to the guest's port 22; null: none yet (a template never
   * gets one; a clone gets its own once its identity is applied, by `forwardSsh`).
   */
  sshPort: number | null;
  /** What the guest may reach: nothing, or anything but this host (isolation.ts). */
  egress: Egress;
  /**
   * Guest RAM: anonymous (null), or a file: `shared` while a template is made (its RAM is
   * the file), private for a clone (the template's RAM, copy-on-write, never written back).
   */
  memory: { file: string; shared: boolean } | null;
  /** Wait for a migration stream (a clone) instead of booting. */
  incoming: boolean;
}

/** The descriptor number a snapshot's device state is handed to QEMU under (`fd:3` in an incoming migration's URI). */
export const STATE_FD = 3;
/** The descriptors of a handed-over disk (read-write, read-only) and the QEMU fd set they form (`/dev/fdset/1`). */
const DISK_FDS = [4, 5] as const;
const DISK_FDSET = 1;

/**
 * Kernel arguments for a guest under TCG. The kernel calibrates its TSC against the emulated
 * PIT, which fails now and then when the host is busy ("could not calculate TSC khz") and
 * the boot then hangs for good; telling it the (host's) TSC rate skips the calibration
 * (measured 8 boots with one hang before, 10 of 10 after, and ~0.5 s faster). And an
 * emulated CPU does not speculate, so the kernel's Spectre mitigations (retpolines, RSB
 * filling) guard against nothing there and only cost every indirect call.
 */
let tcgArgs: Promise<string> | undefined;
function tcgKernelArgs(): Promise<string> {
  // Read once: the command line is part of what a template is made of (template.ts).
  tcgArgs ??= fs.readFile('/proc/cpuinfo', 'utf8').then((cpuinfo) => {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
    return `${mhz ? ` tsc_early_khz=${Math.round(Number(mhz) * 1000)} tsc=reliable` : ''} mitigations=off`;
  });
  return tcgArgs;
}

// The guest's network: QEMU's user-mode stack (restricted or not, see isolation.ts), SSH
// forwarded from a port of the bind address, set at launch or (a clone) later through the
// monitor. Its addresses are QEMU's own (the guest is 10.0.2.15, see boot-artifacts.ts).
const sshForward = (bind: string, port: number) => `tcp:${bind}:${port}-:22`;

function networkArgs(m: Pick<MachineSpec, 'sshBind' | 'sshPort' | 'egress'>): string[] {
  const forward = m.sshPort === null ? '' : `,hostfwd=${sshForward(m.sshBind, m.sshPort)}`;
  return ['-netdev', `user,id=n0,restrict=${egressArgs(m.egress).restrict}${forward}`, '-device', 'virtio-net-device,netdev=n0'];
}

/** Forwards `port` of `bind` to the running guest's port 22. */
export async function forwardSsh(qmp: Qmp, bind: string, port: number): Promise<void> {
  const said = await qmp.execute<string>('human-monitor-command', { 'command-line': `hostfwd_add n0 ${sshForward(bind, port)}` });
  if (said.trim()) throw new Error(`QEMU could not forward port ${port}: ${said.trim()}`);
}

export async function qemuArgs(m: MachineSpec): Promise<string[]> {
  const accel = m.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max'];
  const memory = m.memory
    ? ['-M', 'microvm,memory-backend=mem', '-object', `memory-backend-file,id=mem,size=${m.memoryMb}M,mem-path=${m.memory.file},share=${m.memory.shared ? 'on' : 'off'}`]
    : ['-M', 'microvm'];
  return [
    ...memory, ...accel,
    '-smp', String(m.cpus), '-m', String(m.memoryMb),
    '-nodefaults', '-no-user-config', '-display', 'none',
    // Appending (O_APPEND): berth cuts the log's oldest bytes in place while QEMU writes (console-log.ts).
    '-chardev', `file,id=console,path=${path.join(m.dir, VM_FILES.console)},append=on`, '-serial', 'chardev:console',
    '-kernel', m.kernel, '-initrd', m.initramfs, '-append', `console=ttyS0 quiet panic=-1${m.accel === 'tcg' ? await tcgKernelArgs() : ''}`,
    '-drive', `id=root,file=${m.disk},format=qcow2,if=none,backing.driver=raw,backing.file.driver=file,backing.file.filename=${m.base}`,
    '-device', 'virtio-blk-device,drive=root',
    '-drive', `id=seed,file=${m.seed},format=raw,if=none,readonly=on`,
    '-device', 'virtio-blk-device,drive=seed',
    ...networkArgs(m),
    '-chardev', `socket,id=identity,path=${VM_FILES.identity},server=on,wait=off`,
    '-device', 'virtio-serial-device', '-device', `virtserialport,chardev=identity,name=${IDENTITY_PORT}`,
    '-qmp', `unix:${VM_FILES.monitor},server=on,wait=off`,
    ...(m.incoming ? ['-incoming', 'defer'] : []),
    '-no-reboot', '-daemonize', '-pidfile', path.join(m.dir, VM_FILES.pid),
    ...egressArgs(m.egress).runAs,
  ];
}

/** Files opened by berth and handed to QEMU open: a snapshot's device state, the VM's disk. */
export interface HandOver {
  /** Becomes descriptor STATE_FD. */
  state?: number;
  /** The disk (`MachineSpec.disk`) opened read-write and read-only: QEMU opens it in both modes (an fd set). */
  disk?: { readWrite: number; readOnly: number };
}

/**
 * Starts QEMU daemonized in the VM's directory; answers its pid once it runs. `nice`: for
 * background work (making a template), which should yield the CPU to VMs being served.
 * `handOver`: files QEMU gets open, usable whatever user it runs as.
 */
export async function launchQemu(m: MachineSpec, opts: { nice?: boolean; handOver?: HandOver } = {}): Promise<number> {
  await fs.mkdir(m.dir, { recursive: true, mode: 0o700 });
  for (const f of [VM_FILES.console, VM_FILES.pid]) await fs.rm(path.join(m.dir, f), { force: true });
  const given = opts.handOver ?? {};
  const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe', 'ignore', 'ignore', 'ignore'];
  if (given.state !== undefined) stdio[STATE_FD] = given.state;
  let args = await qemuArgs(m);
  if (given.disk) {
    [stdio[DISK_FDS[0]], stdio[DISK_FDS[1]]] = [given.disk.readWrite, given.disk.readOnly];
    args = [
      ...DISK_FDS.flatMap((fd) => ['-add-fd', `fd=${fd},set=${DISK_FDSET}`]),
      ...args.map((a) => (a.startsWith('id=root,file=') ? a.replace(`file=${m.disk},`, `file=/dev/fdset/${DISK_FDSET},`) : a)),
    ];
  }
  const [command, argv] = opts.nice ? ['nice', ['-n', '10', 'qemu-system-x86_64', ...args]] : ['qemu-system-x86_64', args];
  await new Promise<void>((resolve, reject) => {
    // Daemonized, QEMU's first process exits once the machine is set up (or failed to be).
    const child = spawn(command, argv, { cwd: m.dir, stdio });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`QEMU exited with ${code}: ${stderr.trim()}`))));
  });
  const pid = await runningPid(m.dir);
  if (pid === null) throw new Error(`QEMU did not start for ${m.dir}`);
  return pid;
}

/** Whether `pid` is the QEMU of this VM directory (its command line names the directory's pid file). */
async function isQemuOf(pid: number, dir: string): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(path.join(dir, VM_FILES.pid));
  } catch {
    return false;
  }
}

/** The QEMU process of a VM directory if it is alive (also after a berth restart). */
export async function runningPid(dir: string): Promise<number | null> {
  try {
    // A pid file outlives its QEMU, and pids are reused: the process must be this VM's.
    const pid = Number((await fs.readFile(path.join(dir, VM_FILES.pid), 'utf8')).trim());
    return (await isQemuOf(pid, dir)) ? pid : null;
  } catch {
    return null;
  }
}

/** Stops the directory's QEMU; `pid` when known finds it even if the directory is gone. */
export async function stopVm(dir: string, timeoutMs = 5000, knownPid?: number | null): Promise<void> {
  const pid = knownPid === undefined ? await runningPid(dir) : knownPid;
  if (pid === null) return;
  const alive = () => isQemuOf(pid, dir);
  // It may exit on its own between the look and the signal (ESRCH): that is fine.
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {}
  };
  signal('SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while ((await alive()) && Date.now() < deadline) await sleep(50);
  if (await alive()) signal('SIGKILL');
  while (await alive()) await sleep(20);
}
