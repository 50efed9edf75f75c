// What every VM boots: Debian's kernel (scripts/fetch-kernel.sh, cached in the data
// directory) and an initramfs generated here from its modules, a static busybox and
// berth-guest (scripts/guest/berth-guest.c, compiled here). The init mounts the VM's disk
// (a copy-on-write overlay over the read-only image base), puts busybox, berth-guest and
// the seed disk's files (/berth/init, and a cold boot's identity) on a private tmpfs at
// /berth, configures QEMU's user-mode network and switches to the image's root.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPTS = fileURLToPath(new URL('../../../scripts', import.meta.url));
/** Load order that works with Debian's 6.1 kernel (virtio, block, net, ext4 are modules). */
export const MODULES = ['virtio_ring', 'virtio', 'virtio_mmio', 'virtio_blk', 'failover', 'net_failover', 'virtio_net', 'virtio_console', 'crc16', 'crc32c_generic', 'mbcache', 'jbd2', 'ext4'];
const GUEST_TOOL_SOURCE = path.join(SCRIPTS, 'guest/berth-guest.c');

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${MODULES.join(' ')}; do insmod /lib/modules/$m.ko || echo "berth-init: could not load $m"; done
for i in $(seq 1 200); do [ -b /dev/vda ] && [ -b /dev/vdb ] && break; sleep 0.02; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "berth-init: cannot mount the root disk"; poweroff -f; }
mkdir -p /newroot/berth && mount -t tmpfs -o mode=0700,size=16m berth /newroot/berth
mkdir /newroot/berth/bin && cp /bin/busybox /bin/berth-guest /newroot/berth/bin/
tar -xf /dev/vdb -C /newroot/berth || echo "berth-init: no seed disk"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mount --move /dev /newroot/dev
umount /proc /sys
echo "berth-init: switching root"
exec switch_root /newroot /berth/init
`;

export interface BootArtifacts {
  kernel: string;
  initramfs: string;
  kernelVersion: string;
  /** Changes whenever anything a guest boots with does: kernel, initramfs (and so its init, busybox, berth-guest). */
  fingerprint: string;
}

/** The kernel (fetched into `cacheDir` once per machine) and an initramfs made to go with it. */
export async function prepareBootArtifacts(cacheDir: string): Promise<BootArtifacts> {
  const { stdout } = await run('bash', [path.join(SCRIPTS, 'fetch-kernel.sh')], {
    maxBuffer: 1 << 20,
    env: { ...process.env, BERTH_CACHE_DIR: cacheDir },
  });
  const kernelDir = stdout.trim().split('\n').pop()!;
  const kernelVersion = fs.readFileSync(path.join(kernelDir, 'version'), 'utf8').trim();
  const busybox = '/bin/busybox';
  const guestTool = await compileGuestTool(kernelDir);
  const hash = createHash('sha256').update(INIT).update(fs.readFileSync(busybox)).update(fs.readFileSync(guestTool)).digest('hex').slice(0, 12);
  const initramfs = path.join(kernelDir, `initramfs-${hash}.cpio.gz`);
  if (!fs.existsSync(initramfs)) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-initrd-'));
    try {
      for (const d of ['bin', 'lib/modules', 'proc', 'sys', 'dev', 'newroot']) fs.mkdirSync(path.join(root, d), { recursive: true });
      fs.copyFileSync(busybox, path.join(root, 'bin/busybox'));
      fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
      fs.copyFileSync(guestTool, path.join(root, 'bin/berth-guest'));
      fs.chmodSync(path.join(root, 'bin/berth-guest'), 0o755);
      for (const m of MODULES) fs.copyFileSync(path.join(kernelDir, 'modules', `${m}.ko`), path.join(root, 'lib/modules', `${m}.ko`));
      fs.writeFileSync(path.join(root, 'init'), INIT, { mode: 0o755 });
      const partial = partialName(initramfs);
      await run('bash', ['-c', `cd "${root}" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "${partial}" && mv "${partial}" "${initramfs}"`]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
  const kernel = path.join(kernelDir, 'vmlinux');
  const k = fs.statSync(kernel);
  const fingerprint = createHash('sha256').update(`${kernelVersion} ${k.size} ${k.mtimeMs} ${hash}`).digest('hex').slice(0, 16);
  return { kernel, initramfs, kernelVersion, fingerprint };
}

/**
 * A name to write `file` under before it is renamed into place: its own for each writer, as
 * processes sharing the cache (several berths, the test files of a run) may make it at once.
 */
const partialName = (file: string) => `${file}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;

/** berth-guest, compiled into `dir` once per source (a static binary without libc: it runs on any image). */
export async function compileGuestTool(dir: string): Promise<string> {
  const source = fs.readFileSync(GUEST_TOOL_SOURCE);
  const out = path.join(dir, `berth-guest-${createHash('sha256').update(source).digest('hex').slice(0, 12)}`);
  if (!fs.existsSync(out)) {
    const partial = partialName(out);
    await run('gcc', ['-static', '-nostdlib', '-no-pie', '-Os', '-s', '-fno-stack-protector', '-fno-builtin', '-fno-asynchronous-unwind-tables', '-o', partial, GUEST_TOOL_SOURCE]);
    fs.renameSync(partial, out);
  }
  return out;
}
