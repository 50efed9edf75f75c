import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { bearerSecurity, page, problemResponses } from '../../http/common-schemas.js';
import { YamlError, parseYamlBounded } from '../../infra/bounded-yaml.js';
import { viewerOf } from '../../http/principal.js';
import { AppError } from '../../errors/app-error.js';
import { neutralReason } from './state.js';
import * as s from './schemas.js';
import type { MachineView } from './queries.js';
import type { MachinesService } from './service.js';

/** The machine as `viewer` may see it: reasons, reservation ids and the login user are for admins. */
export function toMachineDto(m: MachineView, viewer: { admin: boolean }) {
  return {
    id: m.id,
    name: m.name,
    host: m.host,
    port: m.port,
    ...(viewer.admin && { username: m.username }),
    type: m.type,
    tags: (m.tags ?? {}) as Record<string, string>,
    allow_sudo: m.allowSudo,
    keep_password: m.keepPassword,
    status: m.status,
    status_reason: viewer.admin ? m.statusReason : neutralReason(m),
    host_key_fingerprint: m.hostKeyFingerprint,
    host_key: m.hostKey,
    reservation_id: viewer.admin ? m.reservationId : null,
    last_checked_at: m.lastCheckedAt,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
  };
}

const ADMIN = { admin: true };

/** The answer to an admin who registered or changed a machine: with what sudo for tenants means, when it is on. */
const savedMachineDto = (m: MachineView) => ({ ...toMachineDto(m, ADMIN), ...(m.allowSudo && { warning: s.SUDO_WARNING }) });

const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];
/** An import of 1,000 machines in the machine-manager format is about 100 KiB. */
const IMPORT_MAX_BYTES = 256 * 1024;
const YAML_LIMITS = { cpuMs: 5000, maxNodes: 50_000, maxAliases: 100 };

/**
 * POST /v1/machines/import, in a context of its own: the YAML parser exists only for this
 * route, and runs only after the guard (onRequest) let an admin through.
 */
const importRoute: FastifyPluginAsyncZod<{ machines: MachinesService }> = async (app, { machines }) => {
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string', bodyLimit: IMPORT_MAX_BYTES }, async (_request: unknown, body: string) => {
    try {
      return await parseYamlBounded(body, YAML_LIMITS);
    } catch (err) {
      if (!(err instanceof YamlError)) throw err;
      throw err.kind === 'syntax'
        ? new AppError('invalid_yaml', `the YAML document does not parse: ${err.message}`)
        : new AppError('yaml_too_complex', `the YAML document is beyond what an import may be: ${err.message}`);
    }
  });

  app.post(
    '/v1/machines/import',
    {
      onRequest: app.requireAdmin,
      bodyLimit: IMPORT_MAX_BYTES,
      schema: {
        operationId: 'importMachines',
        tags: ['machines'],
        summary: 'Import machines from YAML or JSON (admin); existing names are updated',
        description:
          'Send `Content-Type: application/yaml` with the machine-manager `machines:` list, or the same structure as JSON. ' +
          `At most ${IMPORT_MAX_BYTES / 1024} KiB and 1,000 machines.`,
        security: bearerSecurity,
        body: s.importBody,
        consumes: ['application/json', ...YAML_TYPES],
        response: { 200: s.importResult, ...problemResponses(400, 401, 403, 413, 415) },
      },
    },
    async (request) => machines.import(request.body.machines),
  );
};

export const machinesRoutes: FastifyPluginAsyncZod<{ machines: MachinesService }> = async (app, { machines }) => {
  await app.register(importRoute, { machines });

  app.post(
    '/v1/machines',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'createMachine',
        tags: ['machines'],
        summary: 'Register a machine (admin); its credential is sealed and never returned',
        security: bearerSecurity,
        body: s.createMachineBody,
        response: { 201: s.machine, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => reply.status(201).send(savedMachineDto(await machines.create(request.body))),
  );

  app.get(
    '/v1/machines',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'listMachines',
        tags: ['machines'],
        summary: 'List machines by name; filter by status, type and tags (tag=key:value, repeatable)',
        security: bearerSecurity,
        querystring: s.listMachinesQuery,
        response: { 200: page(s.machine), ...problemResponses(400, 401) },
      },
    },
    async (request) => {
      const { items, nextCursor } = await machines.list(request.query);
      const viewer = viewerOf(request);
      return { items: items.map((m) => toMachineDto(m, viewer)), next_cursor: nextCursor };
    },
  );

  app.get(
    '/v1/machines/:name',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getMachine',
        tags: ['machines'],
        summary: 'Read a machine',
        security: bearerSecurity,
        params: s.nameParams,
        response: { 200: s.machine, ...problemResponses(400, 401, 404) },
      },
    },
    async (request) => toMachineDto(await machines.getOrThrow(request.params.name), viewerOf(request)),
  );

  app.patch(
    '/v1/machines/:name',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'updateMachine',
        tags: ['machines'],
        summary: 'Change a machine (admin)',
        security: bearerSecurity,
        params: s.nameParams,
        body: s.patchMachineBody,
        // 409 machine_is_vm: a VM's machine changes through /v1/vms.
        response: { 200: s.machine, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => savedMachineDto(await machines.update(request.params.name, request.body)),
  );

  app.delete(
    '/v1/machines/:name',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'deleteMachine',
        tags: ['machines'],
        summary: 'Remove a machine from the pool (admin); 409 while it is reserved, or booked ahead unless forced',
        description: 'A machine booked ahead answers 409 `machine_booked` naming the bookings; with `?force=true` they are re-planned onto other matching machines, or fail.',
        security: bearerSecurity,
        params: s.nameParams,
        querystring: s.forceQuery,
        response: { 204: z.null().meta({ description: 'deleted' }), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await machines.remove(request.params.name, request.query);
      return reply.status(204).send(null);
    },
  );

  app.put(
    '/v1/machines/:name/maintenance',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'enterMaintenance',
        tags: ['machines'],
        summary: 'Take a machine out of the pool for maintenance (admin)',
        description: 'A machine booked ahead answers 409 `machine_booked` naming the bookings; with `?force=true` they are re-planned onto other matching machines, or fail.',
        security: bearerSecurity,
        params: s.nameParams,
        querystring: s.forceQuery,
        body: s.maintenanceBody,
        response: { 200: s.machine, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => toMachineDto(await machines.enterMaintenance(request.params.name, request.body.reason, request.query), ADMIN),
  );

  app.delete(
    '/v1/machines/:name/maintenance',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'leaveMaintenance',
        tags: ['machines'],
        summary: 'Return a machine from maintenance to the pool (admin)',
        security: bearerSecurity,
        params: s.nameParams,
        response: { 200: s.machine, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => toMachineDto(await machines.leaveMaintenance(request.params.name), ADMIN),
  );

  app.post(
    '/v1/machines/:name/reprovisioned',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'clearReprovision',
        tags: ['machines'],
        summary: 'Return a machine in needs_reprovision to the pool, once it is reinstalled (admin)',
        description:
          'A machine whose reservation account had sudo waits in `needs_reprovision` when released: its tenant was root and may have ' +
          'left anything behind. Reinstall it (or otherwise make sure it is clean), then clear it here; 409 `not_awaiting_reprovision` otherwise.',
        security: bearerSecurity,
        params: s.nameParams,
        response: { 200: s.machine, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => toMachineDto(await machines.reprovisioned(request.params.name), ADMIN),
  );

  app.post(
    '/v1/machines/:name/check',
    {
      onRequest: app.requireAdmin,
      schema: {
        operationId: 'checkMachine',
        tags: ['machines'],
        summary: 'Probe a machine over SSH (admin); records the host key on first contact',
        security: bearerSecurity,
        params: s.nameParams,
        // 409 machine_is_vm: berth watches its own VMs.
        response: { 200: s.checkResult, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => machines.check(request.params.name),
  );

  app.get(
    '/v1/pool',
    {
      onRequest: app.authenticate,
      schema: {
        operationId: 'getPool',
        tags: ['machines'],
        summary: 'Pool statistics by status and type',
        security: bearerSecurity,
        response: { 200: s.poolStats, 401: problemResponses(401)[401]! },
      },
    },
    async () => machines.pool(),
  );
};
