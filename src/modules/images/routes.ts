import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import type { Image } from '../../generated/prisma/client.js';
import * as s from './schemas.js';
import type { ImagesService } from './service.js';
import { dockerfileContext } from '../../infra/docker/build.js';
import { BUILD_CONTEXT_TYPES, checkBuildContext, spoolUpload } from '../../infra/docker/context-upload.js';
import { HttpProblem, problems } from '../../plugins/problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Where this request's tar build context was spooled (images routes). */
    buildContextFile: string | null;
  }
}
import fs from 'node:fs';

export function toImageDto(i: Image) {
  return {
    id: i.id,
    name: i.name,
    status: i.status,
    error: i.error,
    size_bytes: i.sizeBytes === null ? null : Number(i.sizeBytes),
    build_ms: i.buildMs,
    convert_ms: i.convertMs,
    pool_size: i.poolSize,
    config: (i.config ?? null) as z.infer<typeof s.image>['config'],
    created_at: i.createdAt.toISOString(),
    updated_at: i.updatedAt.toISOString(),
  };
}

export const imagesRoutes: FastifyPluginAsyncZod<{ images: ImagesService; track(build: Promise<void>): void; maxContextBytes: number }> = async (
  app,
  { images, track, maxContextBytes },
) => {
  // A tar build context is spooled to a file as it arrives. Only this parser sets
  // `buildContextFile`: the handler never takes a path from the body itself.
  app.decorateRequest('buildContextFile', null);
  app.addContentTypeParser(BUILD_CONTEXT_TYPES, (request, payload, done) => {
    spoolUpload(payload, maxContextBytes).then(
      (file) => {
        request.buildContextFile = file;
        done(null, 'spooled');
      },
      (err: Error) => done(err, undefined),
    );
  });
  // Whatever the answer, a spooled file no build took over is removed.
  app.addHook('onResponse', async (request) => {
    if (request.buildContextFile) fs.rmSync(request.buildContextFile, { force: true });
  });

  app.post(
    '/v1/images',
    {
      // Before the body is read: nobody but an admin gets to upload anything.
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'createImage',
        tags: ['images'],
        summary: 'Build an image from a Dockerfile or a tar build context (admin); answers at once, the build goes on',
        description:
          'JSON `{name, dockerfile}`, or `Content-Type: application/x-tar` with the build context as the body and the name in `?name=`. ' +
          'The build runs through the local Docker engine with networking off; follow it with GET /v1/images/{id}/log.',
        security: bearerSecurity,
        querystring: s.createImageQuery,
        body: { content: { 'application/json': { schema: s.createImageBody }, 'application/x-tar': { schema: s.buildContextBody } } },
        response: { 202: s.imageAccepted, ...problemResponses(400, 401, 403, 409, 413, 415) },
      },
    },
    async (request, reply) => {
      const body = request.body as z.infer<typeof s.createImageBody> | string;
      let started;
      if (typeof body === 'string') {
        const file = request.buildContextFile;
        if (!file) throw new HttpProblem({ status: 415, code: 'unsupported_media_type', title: 'Unsupported Media Type', detail: 'send JSON, or a tar build context as application/x-tar' });
        if (!request.query.name) throw problems.badRequest('name_required', 'give the image a name: POST /v1/images?name=<name>');
        await checkBuildContext(file);
        started = await images.create(request.query.name, fs.createReadStream(file));
        // The build owns the file now, and removes it when it ends.
        request.buildContextFile = null;
        void started.done.finally(() => fs.rmSync(file, { force: true }));
      } else {
        started = await images.create(body.name, await dockerfileContext(body.dockerfile));
      }
      track(started.done);
      return reply.status(202).send({ id: started.image.id, name: started.image.name, status: 'building' as const });
    },
  );

  app.get(
    '/v1/images',
    {
      preHandler: app.authenticate,
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
      return { items: items.map(toImageDto), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/images/:id',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'getImage',
        tags: ['images'],
        summary: 'Read an image: status, error, sizes and timings',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.image, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => toImageDto(await images.get(request.params.id)),
  );

  app.get(
    '/v1/images/:id/log',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'getImageLog',
        tags: ['images'],
        summary: 'The build log as text/plain, streamed while the image builds',
        security: bearerSecurity,
        params: idParams,
        response: {
          200: z.string().meta({ description: 'text/plain', examples: ['Step 1/2 : FROM berth/debian-sshd:bookworm\n ---> efb6ee4db517\n'] }),
          ...problemResponses(400, 401, 404),
        },
      },
    },
    async (request, reply) => {
      const stream = await images.logStream(request.params.id);
      // A stream is sent as it is (no serializer); typed as the documented text body.
      return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(stream as unknown as string);
    },
  );

  app.delete(
    '/v1/images/:id',
    {
      preHandler: app.requireAdmin,
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
