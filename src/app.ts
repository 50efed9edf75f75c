// buildApp(config, deps): the whole HTTP application, wired once, never listening. The
// server entry (server.ts) and every test build it the same way.
import { hkdfSync, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Config } from './config.js';
import type { Image } from './generated/prisma/client.js';
import type { Database } from './infra/database.js';
import type { Keyring } from './modules/identity/keyring.js';
import { createPasswordHasher, type PasswordHasher } from './modules/identity/passwords.js';
import { identityRoutes } from './modules/identity/routes.js';
import { createIdentityService } from './modules/identity/service.js';
import { createSessionChecker } from './modules/identity/session-check.js';
import { createSessionStore } from './modules/identity/sessions.js';
import { createTokenIssuer } from './modules/identity/tokens.js';
import { serviceRoutes } from './modules/service/routes.js';
import { usersRoutes } from './modules/users/routes.js';
import { createMachineAccess } from './modules/machines/access.js';
import { createLoginKeyInstaller } from './modules/machines/login-key.js';
import { createReprovisioner } from './modules/machines/reprovision.js';
import { machinesRoutes } from './modules/machines/routes.js';
import { createMachinesService } from './modules/machines/service.js';
import { createMachineState } from './modules/machines/state.js';
import { reservationsJob, type TickResult } from './modules/reservations/job.js';
import { createJobRunner, type JobRunner } from './infra/jobs.js';
import { reservationsRoutes } from './modules/reservations/routes.js';
import { createReservationsService } from './modules/reservations/service.js';
import { createSecretBox, loadSecretKey } from './infra/secret-box.js';
import { dockerEngine } from './infra/docker/engine.js';
import type Docker from 'dockerode';
import path from 'node:path';
import { imagesRoutes } from './modules/images/routes.js';
import { createImagesService, imageBasePath } from './modules/images/service.js';
import { vmsRoutes } from './modules/vms/routes.js';
import { createVmsService } from './modules/vms/service.js';
import { imageCommand } from './infra/vm/guest-init.js';
import { createVmRuntime } from './infra/vm/runtime.js';
import { startVm } from './infra/vm/start.js';
import { createTemplates } from './infra/vm/template.js';
import { createUsersService } from './modules/users/service.js';
import identityGuard from './modules/identity/guard.js';
import openapiPlugin from './plugins/openapi.js';
import problemPlugin, { clientErrorHandler, frameworkErrors } from './plugins/problem.js';
import securityHeaders from './plugins/security-headers.js';
import { serializerCompiler } from './plugins/serializer.js';
import { idleTimeoutForClientsOnly } from './http/idle-connections.js';
import { withTimeout } from './shared/time-limit.js';
import { createBackgroundWork } from './shared/background.js';
import { createEventBus, type EventBus } from './events/bus.js';

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

const READINESS_TIMEOUT_MS = 2000;
const noAnswer = () => new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`);
/** How often pooled images' VM templates are checked (made again when stale: a new kernel, QEMU, image). */
const TEMPLATE_CHECK_MS = 60_000;

/** Whether the engine answers, and its version, for /readyz. */
async function dockerStatus(docker: Docker): Promise<{ available: boolean; version?: string }> {
  try {
    const v = await withTimeout(docker.version(), READINESS_TIMEOUT_MS, noAnswer);
    return { available: true, version: v.Version };
  } catch {
    return { available: false };
  }
}

export interface AppDeps {
  prisma: Database;
  keyring: Keyring;
  /** Where logs go (default stdout); tests capture them to prove secrets are redacted. */
  logStream?: NodeJS.WritableStream;
  /** Names this process in reservation leases; default host:pid:random. */
  instanceId?: string;
  /** The password hasher, when the caller made one already (the server, for the admin bootstrap). */
  hasher?: PasswordHasher;
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

  const { prisma, keyring } = deps;
  const events = createEventBus(app.log);
  const hasher = deps.hasher ?? (await createPasswordHasher(config.argon2));
  const checker = createSessionChecker(prisma, { cacheMs: config.sessions.cacheMs });
  const sessions = createSessionStore(prisma, checker, config.sessions);
  const issuer = createTokenIssuer(keyring, config.jwt);
  const identity = createIdentityService({ prisma, hasher, issuer, sessions, registration: config.registration });
  const secretKey = loadSecretKey(config.secretKey, config.dataDir);
  const docker = dockerEngine(config.dockerSocket);
  const secretBox = createSecretBox(secretKey);
  const state = createMachineState(prisma);
  const replacePasswordByKey = createLoginKeyInstaller({ prisma, secretBox, timeouts: config.ssh });
  const access = createMachineAccess({ prisma, state, secretBox, replacePasswordByKey, timeouts: config.ssh });
  const imagesDir = path.join(config.dataDir, 'images');
  // Three watch ticks missed (15 s at least): a VM host's process is gone, not just busy.
  const vmHostDownAfterMs = Math.max(15_000, 3 * config.vms.watchSeconds * 1000);
  const vmRuntime = createVmRuntime({ cacheDir: config.cacheDir, accel: config.vms.accel, egress: config.vms.egress });
  // An image's template snapshots live in its directory, and go with it. Made in the
  // background, one at a time (template.ts): nothing waits for one.
  const templates = config.vms.snapshots
    ? createTemplates({ runtime: vmRuntime, dirOf: (imageId) => path.join(imagesDir, imageId, 'templates'), bootTimeoutMs: config.vms.bootTimeoutMs, log: app.log })
    : null;
  /** The image's template for the default VM shape, made in the background unless it is current. */
  const prepareTemplate = (image: Image) =>
    templates?.ensure({
      imageId: image.id,
      base: imageBasePath(imagesDir, image.id),
      command: imageCommand(image.config),
      cpus: config.vms.defaultCpus,
      memoryMb: config.vms.defaultMemoryMb,
      egress: config.vms.egress,
    });
  const vms = createVmsService({
    startVm: (spec) => startVm(spec, { templates, log: app.log }),
    prisma,
    secretBox,
    state,
    runtime: vmRuntime,
    dir: path.join(config.dataDir, 'vms'),
    imageBase: (imageId) => imageBasePath(imagesDir, imageId),
    node: config.nodeName,
    limits: config.vms,
    network: config.vms,
    hostDownAfterMs: vmHostDownAfterMs,
    log: app.log,
  });
  const reservations = createReservationsService({
    prisma,
    access,
    state,
    events,
    policy: config.reservations,
    instanceId: deps.instanceId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    requestHashKey: Buffer.from(hkdfSync('sha256', secretKey, Buffer.alloc(0), 'berth idempotency request hash', 32)),
    node: config.nodeName,
    vmHostDownAfterMs,
    recycle: vms.recycle,
    log: app.log,
  });
  const machines = createMachinesService({ prisma, secretBox, access, state, cleanupMachine: reservations.cleanupMachine, log: app.log });
  const users = createUsersService({
    prisma,
    hasher,
    identity,
    checker,
    releaseReservationsOf: (userId) => reservations.releaseAll({ userId }),
  });

  await app.register(securityHeaders);
  await app.register(problemPlugin);
  await app.register(openapiPlugin, { version, publicUrl: config.publicUrl });
  await app.register(rateLimit, { global: false });
  await app.register(identityGuard, {
    keyring,
    sessionChecker: checker,
    issuer: config.jwt.issuer,
    audience: config.jwt.audience,
  });

  await app.register(serviceRoutes, {
    readiness: {
      // A probe must answer quickly even when the pool would keep retrying for longer.
      database: () => withTimeout(prisma.$queryRaw`SELECT 1`, READINESS_TIMEOUT_MS, noAnswer),
      capabilities: async () => ({ ssh: { client: 'ssh2' }, docker: await dockerStatus(docker()), vm: vmRuntime.status() }),
    },
  });
  await app.register(identityRoutes, { identity, keyring, throttles: config.throttles });
  await app.register(usersRoutes, { users });
  await app.register(machinesRoutes, { machines });
  await app.register(reservationsRoutes, { reservations });

  const images = createImagesService({
    prisma,
    docker,
    dir: imagesDir,
    log: app.log,
    // A ready image gets its template for the default VM shape at once (in the background),
    // after taking over those of the image whose base it shares.
    onReady: (image, sharedWith) => {
      if (!templates) return;
      void (sharedWith ? templates.adopt(sharedWith.id, image.id, imageBasePath(imagesDir, image.id)) : Promise.resolve())
        .catch((err: Error) => app.log.warn({ image: image.id, err: err.message }, 'could not take over VM templates'))
        .then(() => prepareTemplate(image));
    },
  });
  const builds = createBackgroundWork();
  const track = (build: Promise<void>) => builds.track(build);
  await app.register(imagesRoutes, { images, track, maxContextBytes: config.images.maxContextBytes });
  await app.register(vmsRoutes, { vms });

  /**
   * Asks for the templates of this host's pooled images, once its VM runtime is ready (a
   * host without VMs has nothing to make). Not waiting for it: preparing it (a first kernel
   * fetch, the KVM probe) takes seconds, and closing waits for a tick; onReady runs the
   * job again when the runtime is ready.
   */
  async function prepareTemplates(): Promise<void> {
    if (vmRuntime.status().accel === null) return;
    const pooled = await prisma.image.findMany({ where: { status: 'ready', poolSize: { gt: 0 } } });
    pooled.forEach(prepareTemplate);
  }

  const reprovisioner = config.reprovision && createReprovisioner({ prisma, state, secretBox, command: config.reprovision, log: app.log });

  // Every background job of this process, from start-up to close. VMs outlive the
  // process: at start-up their QEMUs are re-adopted (or found dead) by the VM watch, and
  // closing leaves them running.
  const jobs = createJobRunner(
    [
      reservationsJob(reservations, { intervalSeconds: config.reservations.expiryIntervalSeconds, log: app.log }),
      { name: 'vms', intervalMs: config.vms.watchSeconds * 1000, tick: () => vms.watch() },
      { name: 'images', intervalMs: config.images.watchSeconds * 1000, tick: () => images.failInterrupted() },
      { name: 'sessions', intervalMs: config.sessions.pruneIntervalSeconds * 1000, tick: () => sessions.prune() },
      // Machines a tenant was root on, reinstalled by the admin's command (it runs on after the tick).
      ...(reprovisioner
        ? [{ name: 'reprovision', intervalMs: config.reservations.expiryIntervalSeconds * 1000, tick: () => reprovisioner.startDue() }]
        : []),
      // Pools come back as clones: pooled images' templates are made (again) in the background.
      // First, from start-up on, what makings by a berth process that is gone left behind (a
      // template's QEMU waiting for ever, its work) is removed.
      ...(templates
        ? [
            {
              name: 'vm-templates',
              intervalMs: TEMPLATE_CHECK_MS,
              tick: async () => {
                await templates.sweep((await prisma.image.findMany({ select: { id: true } })).map((i) => i.id));
                await prepareTemplates();
              },
            },
          ]
        : []),
    ],
    app.log,
  );
  app.addHook('onReady', async () => {
    void vmRuntime.get().then(
      // A failed check is logged by the job runner and made again at its next tick.
      () => templates && jobs.runNow('vm-templates').catch(() => {}),
      (err: Error) => app.log.warn({ err: err.message }, 'VMs are unavailable on this host'),
    );
    jobs.start();
  });
  app.addHook('onClose', async () => {
    await reprovisioner?.stop();
    await jobs.stop();
    await vms.close();
    await templates?.close();
    // Builds run after their request has been answered; closing waits for them.
    await builds.settled();
  });
  app.decorate('reservationJob', { tick: () => jobs.runNow<TickResult>('reservations') });
  app.decorate('jobs', jobs);
  app.decorate('events', events);
  return app;
}
