// A VM's serial console log: QEMU appends to it (O_APPEND), and whatever runs in the guest
// — root included — decides how much. berth keeps it bounded on disk (the newest bytes
// stay) and only ever reads its tail or what is new since the last look.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** ext4 and xfs collapse ranges in whole blocks. */
const BLOCK = 4096;

async function sizeOf(file: string): Promise<number> {
  return fs.stat(file).then(
    (s) => s.size,
    () => 0,
  );
}

/** The last `maxBytes` of the log (less when it is shorter), as text. */
export async function readTail(file: string, maxBytes: number): Promise<string> {
  const handle = await fs.open(file, 'r').catch(() => null);
  if (!handle) return '';
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, size - length);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Keeps the log under `maxBytes`: once past it, the oldest bytes are cut so that about
 * half remains. The cut is made in place (fallocate --collapse-range), so QEMU's appends
 * land after what is kept. Where the filesystem cannot collapse a range, the tail is
 * copied to the front and the file truncated — output written in that instant may be lost.
 */
export async function trimLog(file: string, maxBytes: number): Promise<void> {
  const size = await sizeOf(file);
  if (size <= maxBytes) return;
  const keep = Math.floor(maxBytes / 2);
  const drop = Math.floor((size - keep) / BLOCK) * BLOCK;
  if (drop <= 0) return;
  try {
    await run('fallocate', ['--collapse-range', '--offset', '0', '--length', String(drop), file]);
  } catch {
    const tail = Buffer.from(await readTail(file, keep), 'utf8');
    const handle = await fs.open(file, 'r+');
    try {
      await handle.truncate(0);
      await handle.write(tail, 0, tail.length, 0);
    } finally {
      await handle.close();
    }
  }
}

/**
 * Reads what was appended since the last call, at most `maxRead` bytes at a time (in
 * order: a marker is never skipped), and keeps the end of the previous read so that a
 * marker split between two reads is still found.
 */
export class LogScanner {
  private offset = 0;
  private carry = '';

  constructor(
    private readonly file: string,
    private readonly opts: { maxRead: number; overlap: number } = { maxRead: 64 * 1024, overlap: 256 },
  ) {}

  /** The next text appended since the last call (with a little of the old in front); '' when nothing is new. */
  async next(): Promise<string> {
    const size = await sizeOf(this.file);
    // Trimmed (or replaced) since the last look: start again near its end.
    if (size < this.offset) this.offset = Math.max(0, size - this.opts.maxRead);
    if (size === this.offset) return '';
    const handle = await fs.open(this.file, 'r').catch(() => null);
    if (!handle) return '';
    try {
      const buf = Buffer.alloc(Math.min(size - this.offset, this.opts.maxRead));
      const { bytesRead } = await handle.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      const text = this.carry + buf.subarray(0, bytesRead).toString('utf8');
      this.carry = text.slice(-this.opts.overlap);
      return text;
    } finally {
      await handle.close();
    }
  }
}
