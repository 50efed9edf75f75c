// What a template's QEMU left in a directory of the VM user's is taken only if it is what it
// should be (template-results.ts), on real files and the real qemu-img: a symlink, a FIFO, a
// second hard link or an oversized file is refused (the FIFO without blocking), and so is an
// overlay whose header names another backing file, format or a data file.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkOverlay, copyUntrustedFile } from '../../src/infra/vm/template-results.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-template-results-test-'));
const at = (name: string) => path.join(work, name);
const secret = at('secret');
fs.writeFileSync(secret, 'root only\n', { mode: 0o600 });

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('copying an untrusted file', () => {
  it('copies a regular file, mode 0600', async () => {
    fs.writeFileSync(at('state'), Buffer.alloc(70_000, 7));
    expect(await copyUntrustedFile(at('state'), at('state.copy'), 1 << 20)).toBe(70_000);
    expect(fs.readFileSync(at('state.copy')).equals(fs.readFileSync(at('state')))).toBe(true);
    expect(fs.statSync(at('state.copy')).mode & 0o777).toBe(0o600);
  });

  it('refuses a symbolic link (to a root-only file, or to /dev/zero)', async () => {
    fs.symlinkSync(secret, at('link'));
    fs.symlinkSync('/dev/zero', at('zero'));
    await expect(copyUntrustedFile(at('link'), at('link.copy'), 1 << 20)).rejects.toThrow(/symbolic link/);
    await expect(copyUntrustedFile(at('zero'), at('zero.copy'), 1 << 20)).rejects.toThrow(/symbolic link/);
    expect(fs.existsSync(at('link.copy'))).toBe(false);
  });

  it('refuses a FIFO without waiting for a writer, and a device', async () => {
    execFileSync('mkfifo', [at('fifo')]);
    await expect(copyUntrustedFile(at('fifo'), at('fifo.copy'), 1 << 20)).rejects.toThrow(/not a regular file/);
    await expect(copyUntrustedFile('/dev/zero', at('dev.copy'), 1 << 20)).rejects.toThrow(/not a regular file/);
    expect(fs.existsSync(at('fifo.copy'))).toBe(false);
  });

  it('refuses a second hard link to a file', async () => {
    fs.linkSync(secret, at('hardlink'));
    await expect(copyUntrustedFile(at('hardlink'), at('hardlink.copy'), 1 << 20)).rejects.toThrow(/2 links/);
  });

  it('refuses a file larger than the bound', async () => {
    fs.writeFileSync(at('big'), Buffer.alloc(4096));
    await expect(copyUntrustedFile(at('big'), at('big.copy'), 4095)).rejects.toThrow(/larger than 4095 bytes/);
    expect(fs.existsSync(at('big.copy'))).toBe(false);
  });
});

describe('checking an overlay', () => {
  const base = at('base.ext4');
  const other = at('other.ext4');
  fs.writeFileSync(base, Buffer.alloc(1 << 20));
  fs.writeFileSync(other, Buffer.alloc(1 << 20));
  const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { stdio: 'pipe' });

  it('accepts a qcow2 overlay over exactly the base', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, at('good.qcow2'));
    await expect(checkOverlay(at('good.qcow2'), base)).resolves.toBeUndefined();
  });

  it('refuses one whose header names another backing file (or its format is not raw)', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', other, at('other.qcow2'));
    await expect(checkOverlay(at('other.qcow2'), base)).rejects.toThrow(new RegExp(`backing file is ${other}`));
    qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, at('rebased.qcow2'));
    qemuImg('rebase', '-u', '-f', 'qcow2', '-F', 'raw', '-b', secret, at('rebased.qcow2'));
    await expect(checkOverlay(at('rebased.qcow2'), base)).rejects.toThrow(/backing file is .*secret/);
    qemuImg('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', at('good.qcow2'), at('chained.qcow2'));
    await expect(checkOverlay(at('chained.qcow2'), at('good.qcow2'))).rejects.toThrow(/backing format is qcow2/);
  });

  it('refuses one without a backing file, one naming a data file, and a file that is not qcow2', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', at('alone.qcow2'), '1M');
    await expect(checkOverlay(at('alone.qcow2'), base)).rejects.toThrow(/backing file is none/);
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${at('data.raw')}`, '-F', 'raw', '-b', base, at('data.qcow2'));
    await expect(checkOverlay(at('data.qcow2'), base)).rejects.toThrow(/data file/);
    await expect(checkOverlay(base, base)).rejects.toThrow(/qemu-img cannot read the overlay/);
  });
});
