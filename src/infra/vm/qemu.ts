// A cold boot: one VM = one QEMU process (microvm machine, virtio-mmio devices, see
// machine.ts) in its own directory: overlay.qcow2 (copy-on-write over the read-only base:
// created in ~15 ms whatever the image size), seed.tar (the guest init and the VM's
// identity), console.log and qemu.pid. QEMU is daemonized, so VMs outlive a berth restart;
// `runningPid` finds them again. Reset = discard (stop, drop the overlay), then start.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { guestInit, type GuestCommand } from './guest-init.js';
import { identityMessage } from './identity.js';
import type { Egress } from './isolation.js';
import { launchQemu, stopVm, type Accel } from './machine.js';
import { writeSeed } from './seed.js';

export { runningPid, stopVm, type Accel } from './machine.js';
export type { GuestCommand } from './guest-init.js';

const run = promisify(execFile);

export interface VmSpec {
  dir: string;
  /** The guest's hostname. */
  name: string;
  kernel: string;
  initramfs: string;
  /** The image's read-only ext4 base. */
  base: string;
  /** The host address and port forwarded to the guest's port 22. */
  sshBind: string;
  sshPort: number;
  /** What the guest may reach: nothing, or anything but this host (isolation.ts). */
  egress: Egress;
  cpus: number;
  memoryMb: number;
  accel: Accel;
  hostKey: { private: string; public: string };
  authorizedKeys: string[];
  command?: GuestCommand | null;
}

export const OVERLAY = 'overlay.qcow2';

const exists = (file: string) =>
  fs.access(file).then(
    () => true,
    () => false,
  );

/** Whether the VM keeps a writable layer of its own (it was started before and not discarded). */
export const hasOverlay = (dir: string) => exists(path.join(dir, OVERLAY));

/** Boots the VM; keeps an existing overlay (a restart), creates one when missing. */
export async function bootVm(spec: VmSpec): Promise<number> {
  await fs.mkdir(spec.dir, { recursive: true, mode: 0o700 });
  const overlay = path.join(spec.dir, OVERLAY);
  if (!(await exists(overlay))) await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', spec.base, overlay]);
  const seed = await writeSeed(spec.dir, {
    init: { content: guestInit({ command: spec.command, egress: spec.egress }), mode: 0o755 },
    identity: { content: identityMessage({ hostname: spec.name, hostKey: spec.hostKey, authorizedKeys: spec.authorizedKeys }, { withClock: false }), mode: 0o600 },
  });
  return launchQemu({ ...spec, disk: overlay, seed, memory: null, incoming: false });
}

/**
 * The first half of a reset: QEMU is killed at once (what is thrown away needs no clean
 * shutdown) and the writable layer deleted, so nothing the VM wrote survives. The next
 * start is from the pristine base, or a clone of the template (with a new host key: the
 * caller's part).
 */
export async function discardVm(dir: string): Promise<void> {
  await stopVm(dir, 0);
  await fs.rm(path.join(dir, OVERLAY), { force: true });
}

/**
 * Whether KVM really works: /dev/kvm may exist while guests fail (nested virtualisation).
 * Boots the kernel with KVM for at most `timeoutMs` and looks for its first words.
 */
export async function probeKvm(kernel: string, timeoutMs = 5000): Promise<boolean> {
  if (!(await exists('/dev/kvm'))) return false;
  return new Promise((resolve) => {
    // Under `timeout`, so the probe ends even if berth exits first (a guest that hangs
    // under KVM spins a core for as long as its QEMU lives); `timeout` passes our SIGTERM on.
    const child = spawn(
      'timeout',
      ['-s', 'KILL', String(Math.ceil(timeoutMs / 1000) + 1),
        'qemu-system-x86_64', '-M', 'microvm', '-accel', 'kvm', '-cpu', 'host', '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none',
        '-serial', 'stdio', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1', '-no-reboot'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let out = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      child.kill('SIGTERM');
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Linux version')) done(true);
    });
    child.on('exit', () => done(out.includes('Linux version')));
  });
}
