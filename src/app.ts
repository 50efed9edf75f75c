// buildApp(config, deps): the whole HTTP application, never listening: the Fastify
// instance and its layers, in order (plugins, then routes), over the services wiring.ts
// builds and the jobs jobs.ts lists. The server entry (server.ts) and every test build it
// the same way.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Config } from './config.js';
import type { EventBus } from './events/bus.js';
import { idleTimeoutForClientsOnly } from './http/idle-connections.js';
import { createJobRunner, type JobRunner } from './infra/jobs.js';
import { backgroundJobs } from './jobs.js';
import { nudgeSchedulerOn, schedulerJob, type TickResult } from './modules/reservations/job.js';
import { healthRoutes } from './modules/health/routes.js';
import identityGuard from './modules/identity/guard.js';
import { identityRoutes } from './modules/identity/routes.js';
import { imagesRoutes } from './modules/images/routes.js';
import { machinesRoutes } from './modules/machines/routes.js';
import { availabilityRoutes } from './modules/reservations/availability-routes.js';
import { reservationsRoutes } from './modules/reservations/routes.js';
import { usersRoutes } from './modules/users/routes.js';
import { vmsRoutes } from './modules/vms/routes.js';
import { prepareVmRuntime } from './modules/vms/templates.js';
import { webhooksRoutes } from './modules/webhooks/routes.js';
import openapiPlugin from './plugins/openapi.js';
import problemPlugin, { clientErrorHandler, frameworkErrors } from './plugins/problem.js';
import securityHeaders from './plugins/security-headers.js';
import { serializerCompiler } from './plugins/serializer.js';
import { wireServices, type WiringDeps } from './wiring.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The reservation job of this instance: `tick()` runs expiry and reconciliation now (rejects if it fails). */
    reservationJob: { tick(): Promise<TickResult> };
    /** This instance's background jobs (tests run one with `runNow`). */
    jobs: JobRunner;
    /** This instance's domain events: subscribers (webhooks, audit, metrics) listen here. */
    events: EventBus;
  }
}

export interface AppDeps extends WiringDeps {
  /** Where logs go (default stdout); tests capture them to prove secrets are redacted. */
  logStream?: NodeJS.WritableStream;
  /**
   * Called with the bare instance before any plugin or route: a hook added there sees every
   * answer (one added once routes are registered reaches none of them). Tests check every
   * answer against the OpenAPI document this way.
   */
  observe?: (app: FastifyInstance) => void;
}

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/** Never logged: credentials in headers and bodies, tokens anywhere. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.current_password',
  '*.new_password',
  '*.access_token',
  '*.refresh_token',
  '*.private_key',
  '*.privatePem',
  '*.secret',
];

export async function buildApp(config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      ...(deps.logStream && { stream: deps.logStream }),
    },
    trustProxy: config.trustProxy,
    requestTimeout: config.timeouts.requestMs,
    connectionTimeout: config.timeouts.idleMs,
    http: {
      // Node looks for requests past their time this often (30 s by default), and ignores
      // requestTimeout altogether while headersTimeout (60 s by default) is the longer one.
      connectionsCheckingInterval: 1000,
      headersTimeout: Math.min(60_000, config.timeouts.requestMs),
    },
    requestIdHeader: 'x-request-id',
    frameworkErrors,
    clientErrorHandler,
    genReqId: () => randomUUID(),
  }).withTypeProvider<ZodTypeProvider>();
  deps.observe?.(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  app.addHook('onRequest', idleTimeoutForClientsOnly);
  // A response sent while berth is closing ends its connection: closing waits for every
  // connection, and one kept alive after its request was answered would hold shutdown
  // until keepAliveTimeout (Fastify closes only the connections idle when closing starts).
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  const services = await wireServices(config, deps, app.log);
  const { events, vms, vmRuntime, vmTemplates, reprovisioner, builds, webhookDeliveries } = services;
  const scheduler = schedulerJob(services.reservations.schedule, { intervalSeconds: config.reservations.schedulerIntervalSeconds, log: app.log });
  const jobs = createJobRunner(backgroundJobs(services, scheduler, config, app.log), app.log);
  nudgeSchedulerOn(events, () => scheduler.nudge(() => jobs.runNow('scheduler')));

  // Plugins before routes: the document sees only the routes registered after it, and the
  // routes use the guard's decorators (authenticate, requireAdmin).
  await app.register(securityHeaders);
  await app.register(problemPlugin);
  await app.register(openapiPlugin, { version, publicUrl: config.publicUrl });
  await app.register(rateLimit, { global: false });
  await app.register(identityGuard, { keyring: deps.keyring, sessionChecker: services.checker, issuer: config.jwt.issuer, audience: config.jwt.audience });

  // Routes, one plugin per module.
  await app.register(healthRoutes, { readiness: services.readiness });
  await app.register(identityRoutes, { identity: services.identity, keyring: deps.keyring, throttles: config.throttles });
  await app.register(usersRoutes, { users: services.users });
  await app.register(machinesRoutes, { machines: services.machines });
  await app.register(reservationsRoutes, { reservations: services.reservations });
  await app.register(availabilityRoutes, { availability: services.availability });
  await app.register(imagesRoutes, { images: services.images, track: (build) => builds.track(build, 'an image build'), maxContextBytes: config.images.maxContextBytes });
  await app.register(vmsRoutes, { vms });
  await app.register(webhooksRoutes, { webhooks: services.webhooks });

  // The jobs start once the instance is ready. Closing stops the reprovision commands (their
  // machines wait again) before the jobs, whose ticks could start more, then lets the VM
  // work, the template makings and the builds end. VMs keep running: the next berth adopts them.
  app.addHook('onReady', async () => {
    prepareVmRuntime(vmRuntime, vmTemplates && (() => jobs.runNow('vm-templates')), app.log);
    jobs.start();
  });
  app.addHook('onClose', async () => {
    await reprovisioner?.stop();
    // Deliveries in flight are cut short and left, due at once, to the next process.
    await webhookDeliveries.close();
    await jobs.stop();
    await vms.close();
    await vmTemplates?.close();
    // Builds run after their request has been answered; closing waits for them.
    await builds.settled();
  });
  app.decorate('reservationJob', { tick: () => jobs.runNow<TickResult>('reservations') });
  app.decorate('jobs', jobs);
  app.decorate('events', events);
  return app;
}
