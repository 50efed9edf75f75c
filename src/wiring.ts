// Every service of a berth process, built once, each given only what it needs: the one
// place to read to see who depends on whom. app.ts registers what this returns; jobs.ts
// lists the background work over it. Nothing here listens, ticks or answers: building the
// services starts nothing.
import { hkdfSync, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config.js';
import { createEventBus } from './events/bus.js';
import type { Database } from './infra/database.js';
import { dockerEngine } from './infra/docker/engine.js';
import { createSecretBox, loadSecretKey } from './infra/secret-box.js';
import { createVmRuntime } from './infra/vm/runtime.js';
import { startVm } from './infra/vm/start.js';
import { createTemplates } from './infra/vm/template.js';
import { createReadinessProbe } from './modules/health/readiness.js';
import type { Keyring } from './modules/identity/keyring.js';
import { createPasswordHasher, type PasswordHasher } from './modules/identity/passwords.js';
import { createIdentityService } from './modules/identity/service.js';
import { createSessionChecker } from './modules/identity/session-check.js';
import { createSessionStore } from './modules/identity/sessions.js';
import { createTokenIssuer } from './modules/identity/tokens.js';
import { createImagesService, imageBasePath } from './modules/images/service.js';
import { createMachineAccess } from './modules/machines/access.js';
import { createLoginKeyInstaller } from './modules/machines/login-key.js';
import { createReprovisioner } from './modules/machines/reprovision.js';
import { createMachinesService } from './modules/machines/service.js';
import { createMachineState } from './modules/machines/state.js';
import { createAvailabilityService } from './modules/reservations/availability.js';
import { createNoticeSender } from './modules/reservations/notices.js';
import { createReservationsService } from './modules/reservations/service.js';
import { createUsersService } from './modules/users/service.js';
import { createVmsService } from './modules/vms/service.js';
import { createVmTemplates } from './modules/vms/templates.js';
import { createAddressPolicy } from './modules/webhooks/address-policy.js';
import { createDeliverer } from './modules/webhooks/delivery.js';
import { createEgress, type ResolveHost } from './modules/webhooks/egress.js';
import { createWebhooksService } from './modules/webhooks/service.js';
import { subscribeWebhooks } from './modules/webhooks/subscriber.js';
import { createBackgroundWork } from './shared/background.js';

export interface WiringDeps {
  prisma: Database;
  keyring: Keyring;
  /** The password hasher, when the caller made one already (the server, for the admin bootstrap). */
  hasher?: PasswordHasher;
  /** Names this process in reservation and webhook delivery leases; default host:pid:random. */
  instanceId?: string;
  /** How webhook deliveries resolve names (default: the system's resolver); tests answer as a rebinding DNS server would. */
  resolveHost?: ResolveHost;
}

export async function wireServices(config: Config, deps: WiringDeps, log: FastifyBaseLogger) {
  const { prisma, keyring } = deps;
  const events = createEventBus(log);
  const secretKey = loadSecretKey(config.secretKey, config.dataDir);
  const secretBox = createSecretBox(secretKey);
  const docker = dockerEngine(config.dockerSocket);
  const instanceId = deps.instanceId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

  const hasher = deps.hasher ?? (await createPasswordHasher(config.argon2));
  const checker = createSessionChecker(prisma, { cacheMs: config.sessions.cacheMs });
  const sessions = createSessionStore(prisma, checker, config.sessions, events);
  const issuer = createTokenIssuer(keyring, config.jwt);
  const identity = createIdentityService({ prisma, hasher, issuer, sessions, registration: config.registration, events });

  const state = createMachineState(prisma, events);
  const replacePasswordByKey = createLoginKeyInstaller({ prisma, secretBox, timeouts: config.ssh, events });
  const access = createMachineAccess({ prisma, state, secretBox, replacePasswordByKey, timeouts: config.ssh, events });

  const imagesDir = path.join(config.dataDir, 'images');
  const imageBase = (imageId: string) => imageBasePath(imagesDir, imageId);
  const images = createImagesService({ prisma, docker, dir: imagesDir, events, log });
  // Builds go on after their request has been answered (app.ts waits for them when closing).
  const builds = createBackgroundWork(log);

  // Three watch ticks missed (15 s at least): a VM host's process is gone, not just busy.
  const vmHostDownAfterMs = Math.max(15_000, 3 * config.vms.watchSeconds * 1000);
  const vmRuntime = createVmRuntime({ cacheDir: config.cacheDir, accel: config.vms.accel, egress: config.vms.egress });
  // An image's template snapshots live in its directory, and go with it. Made in the
  // background, one at a time (template.ts): nothing waits for one.
  const templates = config.vms.snapshots
    ? createTemplates({ runtime: vmRuntime, dirOf: (imageId) => path.join(imagesDir, imageId, 'templates'), bootTimeoutMs: config.vms.bootTimeoutMs, log })
    : null;
  const vmTemplates = templates
    ? createVmTemplates({
        templates,
        runtime: vmRuntime,
        images,
        events,
        imageBase,
        shape: { cpus: config.vms.defaultCpus, memoryMb: config.vms.defaultMemoryMb, egress: config.vms.egress },
        log,
      })
    : null;
  const vms = createVmsService({
    startVm: (spec) => startVm(spec, { templates, log }),
    prisma,
    secretBox,
    state,
    runtime: vmRuntime,
    dir: path.join(config.dataDir, 'vms'),
    imageBase,
    node: config.nodeName,
    limits: config.vms,
    network: config.vms,
    hostDownAfterMs: vmHostDownAfterMs,
    events,
    log,
  });

  const reservations = createReservationsService({
    prisma,
    access,
    state,
    secretBox,
    events,
    policy: config.reservations,
    instanceId,
    requestHashKey: Buffer.from(hkdfSync('sha256', secretKey, Buffer.alloc(0), 'berth idempotency request hash', 32)),
    node: config.nodeName,
    vmHostDownAfterMs,
    recycle: vms.recycle,
    log,
  });
  // What is booked when, read as the scheduler reads the pool.
  const availability = createAvailabilityService({ prisma });
  // Notices of a coming end, to the accounts' terminals and as events (jobs.ts ticks them).
  const notices = createNoticeSender({ prisma, access, events, noticeMinutes: config.reservations.noticeMinutes, log });
  const machines = createMachinesService({ prisma, secretBox, access, state, cleanupMachine: reservations.cleanupMachine, events, log });
  const users = createUsersService({
    prisma,
    hasher,
    identity,
    checker,
    events,
    releaseReservationsOf: (userId) => reservations.endAllOf(userId),
  });
  // Machines a tenant was root on, reinstalled by the admin's command (when there is one).
  const reprovisioner = config.reprovision ? createReprovisioner({ prisma, state, secretBox, command: config.reprovision, log }) : null;

  // Webhooks hear the event stream: each event they listen for becomes delivery rows, sent by
  // the deliverer at once and retried by its job.
  const egress = createEgress({ policy: createAddressPolicy(config.webhooks.allowHosts), timeoutMs: config.webhooks.timeoutMs, resolve: deps.resolveHost });
  const webhookDeliveries = createDeliverer({ prisma, secretBox, egress, retryDelaysMs: config.webhooks.retryDelaysMs, timeoutMs: config.webhooks.timeoutMs, instanceId, log });
  subscribeWebhooks({ events, prisma, deliverer: webhookDeliveries });
  const webhooks = createWebhooksService({ prisma, secretBox, egress, deliverer: webhookDeliveries });

  const readiness = createReadinessProbe({ prisma, docker, vmRuntime });

  return { events, checker, sessions, identity, users, machines, reservations, availability, notices, reprovisioner, images, builds, vmRuntime, vmTemplates, vms, webhooks, webhookDeliveries, readiness };
}

export type Services = Awaited<ReturnType<typeof wireServices>>;
