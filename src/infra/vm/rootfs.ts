// A Docker image becomes a read-only ext4 base: export a container's filesystem, unpack it
// as root (numeric owners), and make an ext4 image from the directory. VMs never write to
// it; each gets its own copy-on-write overlay.
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

export async function imageToExt4(docker: Docker, image: string, out: string): Promise<{ sizeBytes: number; exportMs: number; ext4Ms: number }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-rootfs-'));
  try {
    const started = performance.now();
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
    const exportMs = performance.now() - started;
    if (!fs.existsSync(path.join(root, 'usr/sbin/sshd'))) {
      throw new ImageNotBootableError(`${image} has no /usr/sbin/sshd: berth reaches VMs over SSH, so the image must install openssh-server`);
    }
    const { stdout } = await run('du', ['-sb', root]);
    const content = Number(stdout.split('\t')[0]);
    // ~1.3x the content plus room for the filesystem's own structures; sparse on disk.
    const sizeBytes = Math.ceil((content * 1.3 + 64 * 1024 * 1024) / 1048576) * 1048576;
    const ext4Started = performance.now();
    fs.rmSync(out, { force: true });
    await run('truncate', ['-s', String(sizeBytes), out]);
    await run('mkfs.ext4', ['-q', '-F', '-d', root, '-m', '0', out]);
    fs.chmodSync(out, 0o444);
    return { sizeBytes, exportMs: Math.round(exportMs), ext4Ms: Math.round(performance.now() - ext4Started) };
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
