// A tar build context uploaded with POST /v1/images is spooled to a private temporary
// file as it arrives (never held in memory), bounded in size, then checked: it must be a
// tar (optionally compressed, as the engine accepts) with a Dockerfile at its root, whose
// text is read for the Dockerfile check.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { AppError } from '../../errors/app-error.js';

const run = promisify(execFile);

export const BUILD_CONTEXT_TYPES = ['application/x-tar', 'application/tar', 'application/gzip', 'application/x-gzip'];

/** Writes `body` to a new temporary file; 413 past `maxBytes` (nothing is kept). */
export async function spoolUpload(body: NodeJS.ReadableStream, maxBytes: number): Promise<string> {
  const file = path.join(os.tmpdir(), `berth-context-${randomUUID()}.tar`);
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _enc, next) {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        next(new AppError('payload_too_large', `a build context may be at most ${maxBytes} bytes`));
      } else next(null, chunk);
    },
  });
  try {
    await pipeline(body, limit, fs.createWriteStream(file, { mode: 0o600 }));
    return file;
  } catch (err) {
    await fs.promises.rm(file, { force: true });
    throw err instanceof AppError ? err : new AppError('malformed_body', `the upload broke off: ${(err as Error).message}`);
  }
}

/** The most a Dockerfile in a build context may be (a JSON Dockerfile may be 256 KiB). */
const DOCKERFILE_MAX_BYTES = 1024 * 1024;

/**
 * 400 unless `file` is a tar archive with one Dockerfile at its root, a regular file;
 * returns its text. One entry only: of two (`Dockerfile` and `./Dockerfile`), the engine
 * would build the last one extracted, which need not be the one read here.
 */
export async function checkBuildContext(file: string): Promise<string> {
  let listing: string;
  try {
    ({ stdout: listing } = await run('tar', ['-tf', file], { maxBuffer: 64 << 20 }));
  } catch {
    throw new AppError('invalid_build_context', 'the body is not a tar archive (plain, gzip, bzip2 or xz)');
  }
  // The engine extracts `/Dockerfile` and `a/../Dockerfile` to the same place.
  const entries = listing.split('\n').filter((entry) => path.posix.normalize(entry.replace(/^\/+/, '')) === 'Dockerfile');
  if (entries.length === 0) throw new AppError('invalid_build_context', 'the build context has no Dockerfile at its root');
  if (entries.length > 1) throw new AppError('invalid_build_context', 'the build context holds its Dockerfile more than once');
  const entry = entries[0]!;
  const unreadable = () => new AppError('invalid_build_context', `the Dockerfile of the build context cannot be read (at most ${DOCKERFILE_MAX_BYTES / 1024} KiB)`);
  // `tar -tv` starts each line with the entry's type: `-` for a regular file (not a link).
  const { stdout: verbose } = await run('tar', ['-tvf', file, '--', entry]).catch(() => {
    throw unreadable();
  });
  if (!verbose.startsWith('-')) throw new AppError('invalid_build_context', 'the Dockerfile of the build context must be a regular file (not a link)');
  const { stdout } = await run('tar', ['-xOf', file, '--', entry], { maxBuffer: DOCKERFILE_MAX_BYTES, encoding: 'utf8' }).catch(() => {
    throw unreadable();
  });
  return stdout;
}
