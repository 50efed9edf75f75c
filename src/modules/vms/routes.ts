import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, idParams, page, problemResponses } from '../../http/common-schemas.js';
import { viewerOf } from '../../http/principal.js';
import * as s from './schemas.js';
import type { VmAccepted, VmView, VmsService } from './service.js';

/** The VM as `viewer` may see it (why it failed — its console's last lines, the tenant's output — is for admins), with whether its host is up. */
export function toVmDto(v: VmView, viewer: { admin: boolean }) {
  return {
    id: v.id,
    name: v.name,
    image: { id: v.image.id, name: v.image.name },
    state: v.state,
    state_reason: viewer.admin ? v.stateReason : v.stateReason && v.state,
    cpus: v.cpus,
    memory_mb: v.memoryMb,
    ssh: { host: v.machine?.host ?? '127.0.0.1', port: v.sshPort, host_key_fingerprint: v.hostKeyFingerprint },
    boot_ms: v.bootMs,
    start_mode: v.startMode,
    machine_name: v.machine?.name ?? null,
    machine_status: v.machine?.status ?? null,
    node: v.node,
    node_status: v.nodeStatus,
    pending_action: v.pendingAction,
    created_at: v.createdAt,
    updated_at: v.updatedAt,
  };
}

const ADMIN = { admin: true };

const accepted = (v: VmAccepted) => ({ id: v.id, name: v.name, state: v.state, pending_action: v.pendingAction });

export const vmsRoutes: FastifyPluginAsyncZod<{ vms: VmsService }> = async (app, { vms }) => {
  app.post(
    '/v1/vms',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'createVm',
        tags: ['vms'],
        summary: 'Boot a VM from a ready image (admin); answers at once, `running` once SSH answers',
        description: 'The VM joins the pool as a machine of type `vm` with the tag `image=<name>` once it runs.',
        security: bearerSecurity,
        body: s.createVmBody,
        response: { 202: s.vmAccepted, ...problemResponses(400, 401, 403, 404, 409, 422, 503) },
      },
    },
    async (request, reply) => reply.status(202).send(accepted(await vms.create(request.body))),
  );

  app.get(
    '/v1/vms',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listVms',
        tags: ['vms'],
        summary: 'List VMs by name',
        security: bearerSecurity,
        querystring: s.listVmsQuery,
        response: { 200: page(s.vm), ...problemResponses(400, 401) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await vms.list(request.query);
      const viewer = viewerOf(request);
      return { items: items.map((v) => toVmDto(v, viewer)), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/vms/:id',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getVm',
        tags: ['vms'],
        summary: 'Read a VM: state, SSH endpoint and pinned host key, boot time',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.vm, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => toVmDto(await vms.getOrThrow(request.params.id), viewerOf(request)),
  );

  for (const action of ['reset', 'start'] as const) {
    app.post(
      `/v1/vms/:id/${action}`,
      {
        onRequest: app.requireAdmin,
        schema: {
          operationId: `${action}Vm`,
          tags: ['vms'],
          summary:
            action === 'reset'
              ? 'Reset a VM (admin): discard its writable layer and boot clean; 409 while reserved'
              : 'Start a stopped or failed VM (admin), keeping its writable layer',
          security: bearerSecurity,
          params: idParams,
          response: { 202: s.vmAccepted, ...problemResponses(400, 401, 403, 404, 409, 503) },
        },
      },
      async (request, reply) => reply.status(202).send(accepted(await vms[action](request.params.id))),
    );
  }

  app.post(
    '/v1/vms/:id/stop',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'stopVm',
        tags: ['vms'],
        summary: 'Stop a VM (admin); its writable layer is kept; 409 while reserved',
        description: 'A VM of another host is stopped by that host: 202, with `pending_action` until it is done.',
        security: bearerSecurity,
        params: idParams,
        response: { 200: s.vm, 202: s.vm, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { vm, handedOver } = await vms.stop(request.params.id);
      return reply.status(handedOver ? 202 : 200).send(toVmDto(vm!, ADMIN));
    },
  );

  app.delete(
    '/v1/vms/:id',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'deleteVm',
        tags: ['vms'],
        summary: 'Stop a VM and delete it with its machine and writable layer (admin); 409 while reserved',
        description: 'A VM of another host is deleted by that host: 202, with `pending_action` until it is done.',
        security: bearerSecurity,
        params: idParams,
        response: { 204: z.null().meta({ description: 'deleted' }), 202: s.vm, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { vm, handedOver } = await vms.remove(request.params.id);
      return handedOver ? reply.status(202).send(toVmDto(vm!, ADMIN)) : reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/vms/:id/console',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'getVmConsole',
        tags: ['vms'],
        summary: "The VM's serial console since its last boot, as text/plain (admin; the last 256 KiB)",
        security: bearerSecurity,
        params: idParams,
        // The 200 is text/plain (problems stay application/problem+json in the document).
        produces: ['text/plain'],
        response: {
          200: z.string().meta({ description: 'text/plain', examples: ['berth-init: switching root\nberth-init: sshd started\n'] }),
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const text = await vms.consoleLog(request.params.id);
      // Sent as it is (no serializer): the documented text body.
      return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').serializer((x: unknown) => x as string).send(text);
    },
  );

  app.put(
    '/v1/images/:id/pool',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'setImagePool',
        tags: ['images'],
        summary: 'Keep exactly `size` VMs of this image (admin): boots more, or deletes unreserved ones; 409 if reserved VMs are in the way',
        security: bearerSecurity,
        params: idParams,
        body: s.poolBody,
        response: { 200: s.poolResponse, ...problemResponses(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request) => {
      const { image, vms: members } = await vms.resizePool(request.params.id, request.body.size);
      return { image_id: image.id, image: image.name, size: image.poolSize, vms: members.map((v) => toVmDto(v, ADMIN)) };
    },
  );
};
