// Builds a Docker image from a Dockerfile (or a whole tar build context) through the
// local engine's API (dockerode), with networking off, writing the build's output to a
// log file as it comes so it can be streamed while the build runs.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type Docker from 'dockerode';

const run = promisify(execFile);

export class BuildFailedError extends Error {
  override name = 'BuildFailedError';
}

export interface BuildResult {
  imageId: string;
  buildMs: number;
}

/** A build context holding just this Dockerfile. */
export async function dockerfileContext(dockerfile: string): Promise<Readable> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-context-'));
  try {
    await fsp.writeFile(path.join(dir, 'Dockerfile'), dockerfile);
    const tarball = path.join(dir, 'context.tar');
    await run('tar', ['-C', dir, '--owner=0', '--group=0', '-cf', tarball, 'Dockerfile']);
    return Readable.from([await fsp.readFile(tarball)]);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Builds `context` as `tag`. Every line of output is appended to `logFile` as it arrives;
 * a failing step rejects with BuildFailedError carrying the engine's own message.
 */
export async function buildImage(docker: Docker, context: Readable, tag: string, logFile: string): Promise<BuildResult> {
  const started = performance.now();
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  try {
    const stream = await docker.buildImage(context as unknown as NodeJS.ReadableStream, {
      t: tag,
      networkmode: 'none', // nothing outside this machine is reachable, and nothing should be tried
      rm: true,
      forcerm: true,
    });
    let failure: string | undefined;
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? reject(err) : resolve()),
        (event: { stream?: string; status?: string; error?: string; errorDetail?: { message?: string } }) => {
          if (event.stream) log.write(event.stream);
          else if (event.status) log.write(`${event.status}\n`);
          if (event.error) {
            failure = event.errorDetail?.message ?? event.error;
            log.write(`ERROR: ${failure}\n`);
          }
        },
      );
    });
    if (failure) throw new BuildFailedError(failure);
    const image = await docker.getImage(tag).inspect();
    return { imageId: image.Id, buildMs: Math.round(performance.now() - started) };
  } catch (err) {
    if (err instanceof BuildFailedError) throw err;
    throw new BuildFailedError((err as Error).message);
  } finally {
    await new Promise<void>((r) => log.end(r));
  }
}
