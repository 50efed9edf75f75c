// Images: a Dockerfile (or a tar build context) built by the engine, then converted into
// the read-only ext4 base VMs boot from (or, when the engine hands back an image berth has
// converted already, sharing that base: a hard link). The work runs in the background; the row says
// where it is (`building` → `ready` | `failed` with the reason) and the log file is
// readable, and followable, while it grows. A build whose process died stops
// heartbeating and is marked failed by the next process that looks. Each change of an
// image's status is raised as `image.changed` once it is committed (the VM templates hear
// of ready images that way).
import { isUniqueViolation } from '../../infra/database.js';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { Prisma, type Image, type PrismaClient } from '../../generated/prisma/client.js';
import { buildImage } from '../../infra/docker/build.js';
import { imageToExt4 } from '../../infra/vm/rootfs.js';
import { AppError } from '../../errors/app-error.js';
import { afterName, pageOf } from '../../infra/paging.js';
import type { EventBus } from '../../events/bus.js';
import { checkDockerfile } from './dockerfile-policy.js';

const HEARTBEAT_MS = 10_000;
/** A build not heard of for this long was interrupted. */
const STALE_MS = 60_000;

export interface ImagesDeps {
  prisma: PrismaClient;
  /** The engine's client, made on first use. */
  docker: () => Docker;
  /** Where each image keeps its build log and ext4 base: <dir>/<id>/. */
  dir: string;
  /** Where committed changes of an image are raised. */
  events: Pick<EventBus, 'raise'>;
  log: { error(obj: object, msg: string): void };
}

const notFound = () => new AppError('image_not_found', 'no such image');

/** What the API shows of an image (not the engine's id, nor the build's heartbeat). */
const imageViewSelect = {
  id: true,
  name: true,
  status: true,
  error: true,
  sizeBytes: true,
  buildMs: true,
  convertMs: true,
  poolSize: true,
  config: true,
  createdAt: true,
  updatedAt: true,
} satisfies Prisma.ImageSelect;
export type ImageView = Prisma.ImageGetPayload<{ select: typeof imageViewSelect }>;
/** The most of a log one read takes. */
const LOG_READ_BYTES = 64 * 1024;

/** What `file` holds from `offset` on (at most LOG_READ_BYTES); empty when nothing, or no file yet. */
async function readFrom(file: string, offset: number): Promise<Buffer> {
  const handle = await fsp.open(file, 'r').catch(() => null);
  if (!handle) return Buffer.alloc(0);
  try {
    const buf = Buffer.alloc(LOG_READ_BYTES);
    const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
export const dockerTag = (image: Pick<Image, 'id'>) => `berth/image-${image.id}:latest`;
/** The read-only ext4 base VMs of this image boot from. */
export const imageBasePath = (imagesDir: string, imageId: string) => path.join(imagesDir, imageId, 'base.ext4');

export function createImagesService({ prisma, docker, dir, events, log }: ImagesDeps) {
  const paths = (id: string) => ({ dir: path.join(dir, id), log: path.join(dir, id, 'build.log'), base: imageBasePath(dir, id) });
  const changed = (image: Pick<Image, 'id' | 'name'>, status: Image['status'] | 'deleted', sharesBaseWith: string | null = null) =>
    events.raise('image.changed', { imageId: image.id, name: image.name, status, sharesBaseWith });

  async function getOrThrow(id: string): Promise<Image> {
    const image = await prisma.image.findUnique({ where: { id } });
    if (!image) throw notFound();
    return image;
  }

  async function run(image: Image, context: Readable): Promise<void> {
    const p = paths(image.id);
    const heartbeat = setInterval(() => {
      void prisma.image.update({ where: { id: image.id }, data: { heartbeatAt: new Date() } }).catch(() => {});
    }, HEARTBEAT_MS);
    try {
      const built = await buildImage(docker(), context, dockerTag(image), p.log);
      const inspected = await docker().getImage(dockerTag(image)).inspect();
      const c = inspected.Config ?? {};
      const shared = await shareConvertedBase(image, built.imageId);
      let converted: { sizeBytes: number; ms: number };
      if (shared) {
        await fsp.appendFile(p.log, `berth: the engine image is that of ${shared.image.name}, converted already: its base is shared, nothing exported (${shared.ms} ms)\n`);
        converted = { sizeBytes: Number(shared.image.sizeBytes), ms: shared.ms };
      } else {
        const made = await imageToExt4(docker(), dockerTag(image), p.base);
        const how = made.source === 'layers' ? "mounted the engine's layers" : 'exported the filesystem';
        await fsp.appendFile(p.log, `berth: ${how} in ${made.readMs} ms; made a ${Math.round(made.sizeBytes / 1048576)} MiB ext4 base in ${made.ext4Ms} ms\n`);
        converted = { sizeBytes: made.sizeBytes, ms: made.readMs + made.ext4Ms };
      }
      const ready = await prisma.image.update({
        where: { id: image.id },
        data: {
          status: 'ready',
          dockerId: built.imageId,
          buildMs: built.buildMs,
          convertMs: converted.ms,
          sizeBytes: BigInt(converted.sizeBytes),
          config: { entrypoint: c.Entrypoint ?? null, cmd: c.Cmd ?? null, env: c.Env ?? [], user: c.User || null, workdir: c.WorkingDir || null },
          heartbeatAt: null,
        },
      });
      await changed(ready, 'ready', shared?.image.id ?? null);
    } catch (err) {
      const message = (err as Error).message;
      await fsp.appendFile(p.log, `berth: the image failed: ${message}\n`);
      const failed = await prisma.image
        .update({ where: { id: image.id }, data: { status: 'failed', error: message.slice(0, 2048), heartbeatAt: null } })
        .catch((e: unknown) => log.error({ err: e, image: image.id }, 'could not record a failed build'));
      if (failed) await changed(failed, 'failed');
    } finally {
      clearInterval(heartbeat);
    }
  }

  /**
   * The same engine image converted for another ready image: its base, hard-linked (it lives
   * as long as either image does). Null when there is none (or it went away meanwhile).
   */
  async function shareConvertedBase(image: Image, dockerId: string): Promise<{ image: Image; ms: number } | null> {
    const started = performance.now();
    const twins = await prisma.image.findMany({ where: { dockerId, status: 'ready', NOT: { id: image.id } }, orderBy: { createdAt: 'asc' } });
    for (const twin of twins) {
      try {
        await fsp.link(paths(twin.id).base, paths(image.id).base);
        return { image: twin, ms: Math.round(performance.now() - started) };
      } catch {
        // Deleted meanwhile: the next one, or a conversion.
      }
    }
    return null;
  }

  return {
    getOrThrow,

    /** The image, or null when there is none (deleted meanwhile). */
    find: (id: string): Promise<Image | null> => prisma.image.findUnique({ where: { id } }),

    /** The ready images with a pool of VMs: those whose VM templates are kept made. */
    listPooled: (): Promise<Image[]> => prisma.image.findMany({ where: { status: 'ready', poolSize: { gt: 0 } } }),

    /** The id of every image, whatever its status. */
    async listIds(): Promise<string[]> {
      return (await prisma.image.findMany({ select: { id: true } })).map((i) => i.id);
    },

    /**
     * Starts a build of `context`, whose Dockerfile is `dockerfile`; resolves once it is
     * recorded (the build itself goes on). A Dockerfile that would reach the network is refused first.
     */
    async create(name: string, dockerfile: string, context: Readable): Promise<{ image: Image; done: Promise<void> }> {
      checkDockerfile(dockerfile);
      let image: Image;
      try {
        image = await prisma.image.create({ data: { name, heartbeatAt: new Date() } });
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new AppError('image_exists', `an image named ${name} exists`);
        }
        throw err;
      }
      await changed(image, 'building');
      await fsp.mkdir(paths(image.id).dir, { recursive: true });
      await fsp.writeFile(paths(image.id).log, '');
      return { image, done: run(image, context) };
    },

    async list(q: { status?: Image['status']; limit: number; cursor?: string }) {
      const rows = await prisma.image.findMany({
        where: { ...(q.status && { status: q.status }), ...afterName(q.cursor) },
        orderBy: { name: 'asc' },
        take: q.limit + 1,
        select: imageViewSelect,
      });
      return pageOf(rows, q.limit, (i) => i.name);
    },

    /** The build log; while the image is building, a stream that follows it until the build ends. */
    async logStream(id: string): Promise<Readable> {
      await getOrThrow(id);
      const file = paths(id).log;
      let offset = 0;
      let finished = false;

      /** Pushes what the log gained since the last read, waiting while the build runs and writes nothing. */
      async function next(stream: Readable): Promise<void> {
        for (;;) {
          const chunk = await readFrom(file, offset);
          if (chunk.length) {
            offset += chunk.length;
            stream.push(chunk);
            return;
          }
          if (finished) {
            stream.push(null);
            return;
          }
          const { status } = await getOrThrow(id).catch(() => ({ status: 'failed' as const }));
          // One more read after the build ends picks up its last lines.
          if (status !== 'building') finished = true;
          else await sleep(200);
        }
      }

      return new Readable({
        // An async read() that throws would be an unhandled rejection (which ends the
        // process): any failure ends this stream instead.
        read() {
          next(this).catch((err: Error) => this.destroy(err));
        },
      });
    },

    async remove(id: string): Promise<void> {
      const image = await getOrThrow(id);
      if (image.status === 'building') throw new AppError('image_building', 'the image is still being built; delete it once it is done');
      const inUse = () => new AppError('image_in_use', 'VMs use this image; delete them (or set its pool to 0) first');
      if (await prisma.vm.count({ where: { imageId: id } })) throw inUse();
      try {
        // The foreign key refuses while a VM refers to it, also one created just now.
        await prisma.image.delete({ where: { id } });
      } catch (err) {
        if (err instanceof Prisma.PrismaClientKnownRequestError && ['P2003', 'P2014'].includes(err.code)) throw inUse();
        throw err;
      }
      await changed(image, 'deleted');
      await docker().getImage(dockerTag(image)).remove({ force: true }).catch(() => {});
      // A VM template of the image may be in the making (it starts once the image is ready): its
      // QEMU creates files in the directory while it is being removed, which fails one pass
      // with ENOTEMPTY. Another pass removes them; the making then fails on its own (logged).
      await fsp.rm(paths(id).dir, { recursive: true, force: true, maxRetries: 5 });
    },

    /**
     * Marks builds whose process stopped heartbeating as failed: the image watch, at start-up
     * and every BERTH_IMAGE_WATCH_SECONDS. Each is failed on its own, still on the condition
     * that made it a candidate: of two processes that look at once, one fails it (and says so).
     */
    async failInterrupted(): Promise<number> {
      const stale = { status: 'building', heartbeatAt: { lt: new Date(Date.now() - STALE_MS) } } satisfies Prisma.ImageWhereInput;
      const candidates = await prisma.image.findMany({ where: stale, select: { id: true, name: true } });
      let failed = 0;
      for (const image of candidates) {
        const { count } = await prisma.image.updateMany({
          where: { id: image.id, ...stale },
          data: { status: 'failed', error: 'the build was interrupted (berth stopped); build it again', heartbeatAt: null },
        });
        if (count !== 1) continue;
        failed += 1;
        await changed(image, 'failed');
      }
      return failed;
    },
  };
}

export type ImagesService = ReturnType<typeof createImagesService>;
