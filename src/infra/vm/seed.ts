// The seed disk: a read-only raw disk holding a tar the initramfs unpacks into the guest's
// /berth tmpfs. It carries the guest init (guest-init.ts) and, for a cold boot, the VM's
// identity; a template's seed has no identity (its clones get theirs over the channel).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Writes `<dir>/seed.tar` holding `files` (name → content, root-owned, private). */
export async function writeSeed(dir: string, files: Record<string, { content: string; mode: number }>): Promise<string> {
  const staging = await fs.mkdtemp(path.join(dir, 'seed-'));
  try {
    for (const [name, f] of Object.entries(files)) await fs.writeFile(path.join(staging, name), f.content, { mode: f.mode });
    const seed = path.join(dir, 'seed.tar');
    await run('tar', ['-C', staging, '--owner=0', '--group=0', '--numeric-owner', '-cf', `${seed}.tmp`, ...Object.keys(files)]);
    // A block device is read in 512-byte sectors.
    const { size } = await fs.stat(`${seed}.tmp`);
    await fs.truncate(`${seed}.tmp`, Math.ceil(size / 512) * 512);
    await fs.rename(`${seed}.tmp`, seed);
    return seed;
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}
