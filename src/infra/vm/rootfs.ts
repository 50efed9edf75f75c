// A Docker image becomes a read-only ext4 base, made with `mkfs.ext4 -d` from the image's
// filesystem. When the engine keeps its layers with overlay2 on this host (and berth may
// mount), that filesystem is the layers themselves (one layer's directory, or several
// mounted read-only as one overlay): no container, no export, no copy (measured: a few ms
// instead of 2-6 s for a 250 MB image).
// Otherwise it is a container's export, unpacked as root (numeric owners). VMs never write
// to the base; each gets its own copy-on-write overlay.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';

const run = promisify(execFile);

export class ImageNotBootableError extends Error {
  override name = 'ImageNotBootableError';
}

/** How the image's filesystem was read. */
export type RootfsSource = 'layers' | 'export';

/** Mount options are limited to a page; deeper images are exported instead. */
const MAX_LOWERDIR_CHARS = 3500;

/** The image's layer directories (top first) when the engine uses overlay2 and they are visible here. */
async function layerDirs(docker: Docker, image: string): Promise<string[] | null> {
  const info = await docker.getImage(image).inspect();
  if (info.GraphDriver?.Name !== 'overlay2') return null;
  const data = info.GraphDriver.Data as Record<string, string | undefined>;
  const dirs = [data.UpperDir, ...(data.LowerDir ? data.LowerDir.split(':') : [])].filter((d): d is string => !!d);
  if (!dirs.length || dirs.join(':').length > MAX_LOWERDIR_CHARS || !dirs.every((d) => fs.existsSync(d))) return null;
  return dirs;
}

/**
 * The image's merged filesystem, read-only: one layer is its own directory; several are
 * mounted as one overlay at `mountPoint` (overlayfs applies their whiteouts). Null when
 * berth may not mount (not root).
 */
async function layersTree(dirs: string[], mountPoint: string): Promise<{ dir: string; mounted: boolean } | null> {
  if (dirs.length === 1) return { dir: dirs[0]!, mounted: false };
  return run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${dirs.join(':')}`, mountPoint]).then(
    () => ({ dir: mountPoint, mounted: true }),
    () => null,
  );
}

async function exportContainer(docker: Docker, image: string, root: string): Promise<void> {
  const container = await docker.createContainer({ Image: image, Cmd: ['/bin/true'], HostConfig: { NetworkMode: 'none' } });
  try {
    const stream = await container.export();
    await new Promise<void>((resolve, reject) => {
      const tar = spawn('tar', ['-C', root, '--numeric-owner', '-xf', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      tar.stderr.on('data', (d) => (err += d));
      tar.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`unpacking the image failed: ${err.trim()}`))));
      stream.pipe(tar.stdin);
    });
  } finally {
    await container.remove({ force: true });
  }
}

export async function imageToExt4(
  docker: Docker,
  image: string,
  out: string,
): Promise<{ sizeBytes: number; source: RootfsSource; readMs: number; ext4Ms: number }> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-rootfs-'));
  let tree: { dir: string; mounted: boolean } | null = null;
  try {
    const started = performance.now();
    const dirs = await layerDirs(docker, image);
    tree = dirs && (await layersTree(dirs, scratch));
    if (!tree) await exportContainer(docker, image, scratch);
    const root = tree?.dir ?? scratch;
    const readMs = performance.now() - started;
    if (!fs.existsSync(path.join(root, 'usr/sbin/sshd'))) {
      throw new ImageNotBootableError(`${image} has no /usr/sbin/sshd: berth reaches VMs over SSH, so the image must install openssh-server`);
    }
    const ext4Started = performance.now();
    const { stdout } = await run('du', ['-sb', root]);
    const content = Number(stdout.split('\t')[0]);
    // ~1.3x the content plus room for the filesystem's own structures; sparse on disk.
    const sizeBytes = Math.ceil((content * 1.3 + 64 * 1024 * 1024) / 1048576) * 1048576;
    fs.rmSync(out, { force: true });
    await run('truncate', ['-s', String(sizeBytes), out]);
    await run('mkfs.ext4', ['-q', '-F', '-d', root, '-m', '0', out]);
    fs.chmodSync(out, 0o444);
    return { sizeBytes, source: tree ? 'layers' : 'export', readMs: Math.round(readMs), ext4Ms: Math.round(performance.now() - ext4Started) };
  } finally {
    // Never a recursive removal while the engine's layers may show through `scratch`.
    if (tree?.mounted) await run('umount', [scratch]).catch(() => run('umount', ['-l', scratch]));
    if (tree) fs.rmdirSync(scratch);
    else fs.rmSync(scratch, { recursive: true, force: true });
  }
}
