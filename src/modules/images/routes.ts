import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import type { Image } from '../../generated/prisma/client.js';
import * as s from './schemas.js';
import type { ImagesService } from './service.js';
import { dockerfileContext } from '../../infra/docker/build.js';
import { BUILD_CONTEXT_TYPES, checkBuildContext, spoolUpload } from '../../infra/docker/context-upload.js';
import { problems } from '../../plugins/problem.js';
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
  app.addContentTypeParser(BUILD_CONTEXT_TYPES, (_request, payload, done) => {
    spoolUpload(payload, maxContextBytes).then((file) => done(null, file), (err: Error) => done(err, undefined));
  });

  app.post(
    '/v1/images',
    {
      preHandler: app.requireAdmin,
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
        // A spooled tar: this request owns the file until the build takes it over.
        try {
          if (!request.query.name) throw problems.badRequest('name_required', 'give the image a name: POST /v1/images?name=<name>');
          await checkBuildContext(body);
          const file = body;
          started = await images.create(request.query.name, fs.createReadStream(file));
          void started.done.finally(() => fs.rmSync(file, { force: true }));
        } catch (err) {
          fs.rmSync(body, { force: true });
          throw err;
        }
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
