// One VM = one QEMU process (microvm machine, virtio-mmio devices) in its own directory:
// overlay.qcow2 (copy-on-write over the read-only base: created in ~15 ms whatever the
// image size), seed.tar (a read-only disk with the VM's own SSH host key, the authorized
// keys and /berth/init), console.log and qemu.pid. QEMU is daemonized, so VMs outlive a
// berth restart; `runningPid` finds them again. Reset = stop, discard the overlay, boot.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { egressArgs, type Egress } from './isolation.js';

const run = promisify(execFile);

export type Accel = 'kvm' | 'tcg';

/** What the image itself runs (its Docker config), started after sshd. */
export interface GuestCommand {
  argv: string[];
  env: string[];
  user: string | null;
  workdir: string | null;
}

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

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * PID 1 of the guest after switch_root: sshd with the handed-in host key, then the image's
 * own command (as the image's user, in its workdir, with its env), then reap children.
 */
export function guestInit(spec: Pick<VmSpec, 'name' | 'command' | 'egress'>): string {
  const lines = [
    '#!/bin/sh',
    'mount -t proc proc /proc 2>/dev/null',
    'mount -t sysfs sysfs /sys 2>/dev/null',
    'mkdir -p /dev/pts /dev/shm /run/sshd',
    'mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null',
    'mount -t tmpfs tmpfs /dev/shm 2>/dev/null',
    `hostname ${shellQuote(spec.name)} 2>/dev/null; echo ${shellQuote(spec.name)} >/etc/hostname`,
    // A host that knows its own name (sudo, hostname -f), and a resolver only where there is a network.
    `printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t%s\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' ${shellQuote(spec.name)} >/etc/hosts`,
    spec.egress === 'internet' ? `echo 'nameserver 10.0.2.3' >/etc/resolv.conf` : ': >/etc/resolv.conf',
    // UseDNS no: a login is never slowed by a reverse lookup of the client.
    '/usr/sbin/sshd -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PermitRootLogin=prohibit-password -o UsePAM=no -o UseDNS=no \\',
    '  && echo "berth-init: sshd started" || echo "berth-init: sshd failed to start"',
  ];
  const c = spec.command;
  if (c && c.argv.length) {
    const argv = c.argv.map(shellQuote).join(' ');
    const user = c.user && !['root', '0', '0:0'].includes(c.user) ? c.user : null;
    // runuser takes names, setpriv numeric ids ("1000" or "1000:1000").
    const [uid, gid] = (user ?? '').split(':');
    const asUser = !user ? argv : /^\d+(:\d+)?$/.test(user) ? `setpriv --reuid=${uid} --regid=${gid ?? uid} --clear-groups ${argv}` : `runuser -u ${shellQuote(user)} -- ${argv}`;
    lines.push(
      '(',
      ...c.env.map((e) => `  export ${shellQuote(e)}`),
      `  cd ${shellQuote(c.workdir || '/')} 2>/dev/null || cd /`,
      `  echo "berth-init: starting the image's command"`,
      `  exec ${asUser}`,
      ') </dev/null >/dev/console 2>&1 &',
    );
  }
  lines.push('while :; do wait; sleep 1; done', '');
  return lines.join('\n');
}

async function writeSeed(spec: VmSpec): Promise<string> {
  const staging = path.join(spec.dir, 'seed');
  await fs.rm(staging, { recursive: true, force: true });
  await fs.mkdir(path.join(staging, 'etc/ssh'), { recursive: true });
  await fs.mkdir(path.join(staging, 'root/.ssh'), { recursive: true, mode: 0o700 });
  await fs.mkdir(path.join(staging, 'berth'), { recursive: true });
  await fs.writeFile(path.join(staging, 'etc/ssh/ssh_host_ed25519_key'), spec.hostKey.private, { mode: 0o600 });
  await fs.writeFile(path.join(staging, 'etc/ssh/ssh_host_ed25519_key.pub'), `${spec.hostKey.public}\n`, { mode: 0o644 });
  await fs.writeFile(path.join(staging, 'root/.ssh/authorized_keys'), spec.authorizedKeys.join('\n') + '\n', { mode: 0o600 });
  await fs.writeFile(path.join(staging, 'berth/init'), guestInit(spec), { mode: 0o755 });
  const seed = path.join(spec.dir, 'seed.tar');
  await run('tar', ['-C', staging, '--owner=0', '--group=0', '--numeric-owner', '-cf', seed, '.']);
  await fs.rm(staging, { recursive: true, force: true });
  // A block device is read in 512-byte sectors.
  const { size } = await fs.stat(seed);
  await fs.truncate(seed, Math.ceil(size / 512) * 512);
  return seed;
}

/**
 * Under TCG the guest kernel calibrates its TSC against the emulated PIT, which fails now
 * and then when the host is busy ("could not calculate TSC khz") and the boot then hangs
 * for good. Telling it the (host's) TSC rate skips the calibration: measured 8 boots
 * with one hang before, 10 of 10 after, and ~0.5 s faster.
 */
async function tscKernelArgs(): Promise<string> {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(await fs.readFile('/proc/cpuinfo', 'utf8'))?.[1];
  return mhz ? ` tsc_early_khz=${Math.round(Number(mhz) * 1000)} tsc=reliable` : '';
}

async function qemuArgs(spec: VmSpec, seed: string): Promise<string[]> {
  const accel = spec.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max'];
  return [
    '-M', 'microvm', ...accel,
    '-smp', String(spec.cpus), '-m', String(spec.memoryMb),
    '-nodefaults', '-no-user-config', '-display', 'none',
    // Appending (O_APPEND): berth cuts the log's oldest bytes in place while QEMU writes.
    '-chardev', `file,id=console,path=${path.join(spec.dir, 'console.log')},append=on`, '-serial', 'chardev:console',
    '-kernel', spec.kernel, '-initrd', spec.initramfs, '-append', `console=ttyS0 quiet panic=-1${spec.accel === 'tcg' ? await tscKernelArgs() : ''}`,
    '-drive', `id=root,file=${path.join(spec.dir, 'overlay.qcow2')},format=qcow2,if=none`,
    '-device', 'virtio-blk-device,drive=root',
    '-drive', `id=seed,file=${seed},format=raw,if=none,readonly=on`,
    '-device', 'virtio-blk-device,drive=seed',
    // What the guest may reach: see isolation.ts.
    '-netdev', `user,id=n0,restrict=${egressArgs(spec.egress).restrict},hostfwd=tcp:${spec.sshBind}:${spec.sshPort}-:22`,
    '-device', 'virtio-net-device,netdev=n0',
    '-no-reboot', '-daemonize', '-pidfile', path.join(spec.dir, 'qemu.pid'),
    ...egressArgs(spec.egress).runAs,
  ];
}

/** Boots the VM; keeps an existing overlay (a restart), creates one when missing. */
export async function bootVm(spec: VmSpec): Promise<number> {
  await fs.mkdir(spec.dir, { recursive: true, mode: 0o700 });
  const overlay = path.join(spec.dir, 'overlay.qcow2');
  const hasOverlay = await fs.access(overlay).then(
    () => true,
    () => false,
  );
  if (!hasOverlay) await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', spec.base, overlay]);
  const seed = await writeSeed(spec);
  await fs.rm(path.join(spec.dir, 'console.log'), { force: true });
  await run('qemu-system-x86_64', await qemuArgs(spec, seed));
  const pid = await runningPid(spec.dir);
  if (pid === null) throw new Error(`QEMU did not start for ${spec.dir}`);
  return pid;
}

/** The QEMU process of a VM directory if it is alive (also after a berth restart). */
export async function runningPid(dir: string): Promise<number | null> {
  try {
    const pid = Number((await fs.readFile(path.join(dir, 'qemu.pid'), 'utf8')).trim());
    // A pid file outlives its QEMU, and pids are reused: the process must be this VM's.
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(path.join(dir, 'overlay.qcow2')) ? pid : null;
  } catch {
    return null;
  }
}

export async function stopVm(dir: string, timeoutMs = 5000): Promise<void> {
  const pid = await runningPid(dir);
  if (pid === null) return;
  // It may exit on its own between the look and the signal (ESRCH): that is fine.
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {}
  };
  signal('SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while ((await runningPid(dir)) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if ((await runningPid(dir)) !== null) signal('SIGKILL');
  while ((await runningPid(dir)) !== null) await new Promise((r) => setTimeout(r, 20));
}

/**
 * The first half of a reset: QEMU is killed at once (what is thrown away needs no clean
 * shutdown) and the writable layer deleted, so nothing the VM wrote survives. The next
 * `bootVm` starts from the pristine base (with a new host key: the caller's part).
 */
export async function discardVm(dir: string): Promise<void> {
  await stopVm(dir, 0);
  await fs.rm(path.join(dir, 'overlay.qcow2'), { force: true });
}

/**
 * Whether KVM really works: /dev/kvm may exist while guests fail (nested virtualisation).
 * Boots the kernel with KVM for at most `timeoutMs` and looks for its first words.
 */
export async function probeKvm(kernel: string, timeoutMs = 5000): Promise<boolean> {
  if (!(await fs.access('/dev/kvm').then(() => true, () => false))) return false;
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
