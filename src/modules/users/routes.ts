import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import { principalOf } from '../../http/principal.js';
import { user } from '../identity/schemas.js';
import { toUserDto } from '../identity/user-dto.js';
import { createUserBody, listUsersQuery, patchUserBody } from './schemas.js';
import type { UsersService } from './service.js';


export const usersRoutes: FastifyPluginAsyncZod<{ users: UsersService }> = async (app, { users }) => {
  app.post(
    '/v1/users',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'createUser',
        tags: ['users'],
        summary: 'Create a user (admin)',
        security: bearerSecurity,
        body: createUserBody,
        response: { 201: user, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => reply.status(201).send(toUserDto(await users.create(request.body))),
  );

  app.get(
    '/v1/users',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'listUsers',
        tags: ['users'],
        summary: 'List users by username (admin); filter by email, role or a search string',
        security: bearerSecurity,
        querystring: listUsersQuery,
        response: { 200: page(user), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await users.list(request.query);
      return { items: items.map(toUserDto), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/users/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getUser',
        tags: ['users'],
        summary: 'Read a user (admin, or the user themself)',
        security: bearerSecurity,
        params: idParams,
        response: { 200: user, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => toUserDto(await users.getOrThrow(principalOf(request), request.params.id)),
  );

  app.patch(
    '/v1/users/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'updateUser',
        tags: ['users'],
        summary: 'Change a user: admins any field, a user only their own email',
        security: bearerSecurity,
        params: idParams,
        body: patchUserBody,
        response: { 200: user, ...problemResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request) => toUserDto(await users.update(principalOf(request), request.params.id, request.body)),
  );

  app.delete(
    '/v1/users/:id',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'deleteUser',
        tags: ['users'],
        summary: 'Delete a user (admin, not yourself); their sessions end',
        security: bearerSecurity,
        params: idParams,
        response: { 204: z.null().meta({ description: 'deleted' }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await users.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
};
