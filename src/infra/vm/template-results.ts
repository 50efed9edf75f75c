// What a template's QEMU leaves behind is untrusted. It saves the device state and its disk
// into a directory of the unprivileged VM user (template.ts), where any process of that user
// (another VM's QEMU) may swap a file for a symlink to a root-only file, a FIFO or a device
// that never ends; and the QEMU itself, or whoever swapped the overlay, may write into the
// overlay's qcow2 header any host file as its backing or data file, which every clone's QEMU
// would then open by path, as root. So berth takes only regular files of a bounded size,
// read through a descriptor it opened without following links, and an overlay whose header
// names exactly the image's base.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CHUNK = 1 << 20;

export class UntrustedFileError extends Error {
  override name = 'UntrustedFileError';
}

/**
 * Copies `from` to a new file `to` (mode 0600) if `from` is a regular file of at most
 * `maxBytes`, not a link: opened with O_NOFOLLOW (a symlink fails), O_NONBLOCK (a FIFO does
 * not block the open) and checked on the open descriptor; a second hard link (to a file
 * berth may read and the VM user may not) is refused too.
 */
export async function copyUntrustedFile(from: string, to: string, maxBytes: number): Promise<number> {
  const source = await fs.open(from, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw new UntrustedFileError(err.code === 'ELOOP' ? `${from} is a symbolic link` : `${from} cannot be opened: ${err.message}`);
  });
  try {
    const st = await source.stat();
    if (!st.isFile()) throw new UntrustedFileError(`${from} is not a regular file`);
    if (st.nlink !== 1) throw new UntrustedFileError(`${from} has ${st.nlink} links`);
    if (st.size > maxBytes) throw new UntrustedFileError(`${from} is larger than ${maxBytes} bytes (${st.size})`);
    const target = await fs.open(to, 'wx', 0o600);
    let copied = 0;
    try {
      const buf = Buffer.alloc(CHUNK);
      for (let bytesRead = -1; bytesRead !== 0; ) {
        ({ bytesRead } = await source.read(buf, 0, CHUNK, copied));
        copied += bytesRead;
        // It may still grow while being read.
        if (copied > maxBytes) throw new UntrustedFileError(`${from} is larger than ${maxBytes} bytes`);
        await target.write(buf, 0, bytesRead);
      }
    } catch (err) {
      await target.close();
      await fs.rm(to, { force: true });
      throw err;
    }
    await target.close();
    return copied;
  } finally {
    await source.close();
  }
}

interface QemuImgInfo {
  format?: string;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string } };
}

/**
 * Checks that `overlay` is a qcow2 image over exactly `base` (raw), with no external data
 * file. `qemu-img info` opens neither the backing file nor (with a deadline, should the
 * header name something that blocks) anything for long.
 */
export async function checkOverlay(overlay: string, base: string): Promise<void> {
  const { stdout } = await run('qemu-img', ['info', '--output=json', '-f', 'qcow2', overlay], { timeout: 10_000, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }).catch(
    (err: Error) => {
      throw new UntrustedFileError(`qemu-img cannot read the overlay: ${err.message.trim()}`);
    },
  );
  const info = JSON.parse(stdout) as QemuImgInfo;
  const problems = [
    info.format !== 'qcow2' && `its format is ${info.format}`,
    (info['backing-filename'] !== base || info['full-backing-filename'] !== base) && `its backing file is ${info['full-backing-filename'] ?? info['backing-filename'] ?? 'none'}`,
    info['backing-filename-format'] !== 'raw' && `its backing format is ${info['backing-filename-format'] ?? 'not given'}`,
    info['format-specific']?.data?.['data-file'] !== undefined && `it names a data file (${info['format-specific'].data['data-file']})`,
  ].filter(Boolean);
  if (problems.length) throw new UntrustedFileError(`the overlay is not one over the image's base: ${problems.join('; ')}`);
}
