import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import * as s from './schemas.js';
import type { ImagesService, ImageView } from './service.js';
import { dockerfileContext } from '../../infra/docker/build.js';
import { BUILD_CONTEXT_TYPES, checkBuildContext, spoolUpload } from '../../infra/docker/context-upload.js';
import { AppError } from '../../errors/app-error.js';
import { viewerOf } from '../../http/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Where this request's tar build context was spooled (POST /v1/images). */
    buildContextFile: string | null;
  }
}

/**
 * The image as `viewer` may see it. Why a build failed and the image's configuration
 * (its environment above all) may hold secrets or internal addresses: admins only. Users
 * see name, status, sizes and timings, and that a build failed.
 */
export function toImageDto(i: ImageView, viewer: { admin: boolean }) {
  return {
    id: i.id,
    name: i.name,
    status: i.status,
    error: viewer.admin || i.error === null ? i.error : 'the build failed (an admin can read why)',
    size_bytes: i.sizeBytes === null ? null : Number(i.sizeBytes),
    build_ms: i.buildMs,
    convert_ms: i.convertMs,
    pool_size: i.poolSize,
    ...(viewer.admin && { config: (i.config ?? null) as z.infer<typeof s.image>['config'] }),
    created_at: i.createdAt.toISOString(),
    updated_at: i.updatedAt.toISOString(),
  };
}

interface ImagesRouteOptions {
  images: ImagesService;
  track(build: Promise<void>): void;
  maxContextBytes: number;
}

const unsupportedBody = () =>
  new AppError('unsupported_media_type', 'send JSON, or a tar build context as application/x-tar');

/**
 * POST /v1/images, in a context of its own: the tar parser, which spools the upload to
 * disk, exists only for this route and runs only after the guard (onRequest) let an
 * admin through. Only this parser sets `buildContextFile`: the handler never takes a
 * path from the body itself.
 */
const createRoute: FastifyPluginAsyncZod<ImagesRouteOptions> = async (app, { images, track, maxContextBytes }) => {
  app.decorateRequest('buildContextFile', null);
  app.addContentTypeParser(BUILD_CONTEXT_TYPES, { bodyLimit: maxContextBytes }, async (request: FastifyRequest, payload: IncomingMessage) => {
    request.buildContextFile = await spoolUpload(payload, maxContextBytes);
    return 'spooled';
  });
  // Whatever the answer, a spooled file no build took over is removed before it is sent
  // (and, should the client go away first, once the request ends).
  const removeSpool = async (request: { buildContextFile: string | null }) => {
    if (request.buildContextFile) await fsp.rm(request.buildContextFile, { force: true });
    request.buildContextFile = null;
  };
  app.addHook('onSend', async (request, _reply, payload) => {
    await removeSpool(request);
    return payload;
  });
  app.addHook('onResponse', removeSpool);
  app.addHook('onRequestAbort', removeSpool);

  app.post(
    '/v1/images',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'createImage',
        tags: ['images'],
        summary: 'Build an image from a Dockerfile or a tar build context (admin); answers at once, the build goes on',
        description:
          'JSON `{name, dockerfile}`, or `Content-Type: application/x-tar` with the build context as the body and the name in `?name=`. ' +
          'The build runs through the local Docker engine with networking off; follow it with GET /v1/images/{id}/log. ' +
          'A Dockerfile that would reach the network through the engine (ADD of a URL or a git source, `--network`), or that uses ' +
          'a form berth does not check (here-documents, variables in ADD, unknown instructions), is refused: 400 dockerfile_not_allowed.',
        security: bearerSecurity,
        querystring: s.createImageQuery,
        body: { content: { 'application/json': { schema: s.createImageBody }, 'application/x-tar': { schema: s.buildContextBody } } },
        response: { 202: s.imageAccepted, ...problemResponses(400, 401, 403, 409, 413, 415) },
      },
    },
    async (request, reply) => {
      const body = request.body as z.infer<typeof s.createImageBody> | string | undefined;
      if (body === undefined || body === null) throw unsupportedBody();
      let started;
      if (typeof body === 'string') {
        const file = request.buildContextFile;
        if (!file) throw unsupportedBody();
        if (!request.query.name) throw new AppError('name_required', 'give the image a name: POST /v1/images?name=<name>');
        const dockerfile = await checkBuildContext(file);
        started = await images.create(request.query.name, dockerfile, fs.createReadStream(file));
        // The build owns the file now, and removes it when it ends.
        request.buildContextFile = null;
        void started.done.finally(() => fsp.rm(file, { force: true }));
      } else {
        started = await images.create(body.name, body.dockerfile, await dockerfileContext(body.dockerfile));
      }
      track(started.done);
      return reply.status(202).send({ id: started.image.id, name: started.image.name, status: 'building' as const });
    },
  );
};

export const imagesRoutes: FastifyPluginAsyncZod<ImagesRouteOptions> = async (app, opts) => {
  const { images } = opts;
  await app.register(createRoute, opts);

  app.get(
    '/v1/images',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listImages',
        tags: ['images'],
        summary: 'List images by name',
        security: bearerSecurity,
        querystring: s.listImagesQuery,
        response: { 200: page(s.image), ...problemResponses(400, 401) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await images.list(request.query);
      const viewer = viewerOf(request);
      return { items: items.map((i) => toImageDto(i, viewer)), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/images/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getImage',
        tags: ['images'],
        summary: 'Read an image: status, sizes and timings (admins: why a build failed, and its configuration)',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.image, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => toImageDto(await images.getOrThrow(request.params.id), viewerOf(request)),
  );

  app.get(
    '/v1/images/:id/log',
    {
      // A build's output may hold secrets or internal addresses.
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'getImageLog',
        tags: ['images'],
        summary: 'The build log as text/plain, streamed while the image builds (admin)',
        security: bearerSecurity,
        params: idParams,
        // The 200 is text/plain (problems stay application/problem+json in the document).
        produces: ['text/plain'],
        response: {
          200: z.string().meta({ description: 'text/plain', examples: ['Step 1/2 : FROM berth/debian-sshd:bookworm\n ---> efb6ee4db517\n'] }),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const stream = await images.logStream(request.params.id);
      // A build step may print nothing for minutes: a follower is not an idle connection.
      request.socket.setTimeout?.(0);
      // A stream is sent as it is (no serializer); typed as the documented text body.
      return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(stream as unknown as string);
    },
  );

  app.delete(
    '/v1/images/:id',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'deleteImage',
        tags: ['images'],
        summary: 'Delete an image (admin); 409 while it builds',
        security: bearerSecurity,
        params: idParams,
        response: { 204: z.null().meta({ description: 'deleted' }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await images.remove(request.params.id);
      return reply.status(204).send(null);
    },
  );
};
