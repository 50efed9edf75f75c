// Builds the real application on a fresh database, with real keys in a temporary
// directory, plus the little client helpers the tests share.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import Docker from 'dockerode';
import { afterEach } from 'vitest';
import { buildApp, type AppDeps } from '../../src/app.js';
import { dockerTag } from '../../src/modules/images/service.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createPrisma, type Database, type DatabaseTarget } from '../../src/infra/database.js';
import { Keyring } from '../../src/modules/identity/keyring.js';
import { createPasswordHasher } from '../../src/modules/identity/passwords.js';
import { createMigratedDatabase } from './db.js';
import { stopVm } from '../../src/infra/vm/qemu.js';
import { checkAnswersAgainstDocument } from './contract.js';

/**
 * Every answer of every test app is checked against the OpenAPI document (./contract.ts);
 * what disagrees fails the test during which it was answered (answers in beforeAll fail the
 * first test, answers in afterAll the file).
 */
const disagreements: string[] = [];
function assertAnswersAgreeWithDocument() {
  const found = disagreements.splice(0);
  if (found.length) throw new Error(`answers that disagree with the OpenAPI document:\n${found.join('\n')}`);
}
afterEach(assertAnswersAgreeWithDocument);

export interface TestApp {
  app: FastifyInstance;
  target: DatabaseTarget;
  prisma: Database;
  config: Config;
  keyring: Keyring;
  dataDir: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  logStream?: NodeJS.WritableStream;
  /** Another instance's database and keys: two berth processes on one database. */
  shareWith?: TestApp;
  instanceId?: string;
  /** Another instance's data directory: the same berth restarted (with `shareWith`). */
  dataDir?: string;
  /** How webhook deliveries resolve names (a rebinding DNS server, in the webhook tests). */
  resolveHost?: AppDeps['resolveHost'];
}

export async function createTestApp(env: Record<string, string> = {}, opts: TestAppOptions = {}): Promise<TestApp> {
  const db = opts.shareWith
    ? { target: opts.shareWith.target, drop: async () => {} }
    : await createMigratedDatabase();
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'berth-test-'));
  if (opts.shareWith) {
    env = {
      BERTH_JWT_KEYS_DIR: opts.shareWith.config.jwt.keysDir,
      BERTH_SECRET_KEY: fs.readFileSync(path.join(opts.shareWith.dataDir, 'secret.key'), 'utf8').trim(),
      ...env,
    };
  }
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    BERTH_DATA_DIR: dataDir,
    // The VM kernel is fetched once per machine, into the checkout's cache.
    BERTH_CACHE_DIR: path.resolve('.data/cache'),
    // KVM does not work on these machines; probing it costs every test app 5 s of a core
    // (test/vm/boot.test.ts tests the probe itself).
    BERTH_VM_ACCEL: 'tcg',
    // Every injected request comes from 127.0.0.1; the throttling tests set their own limits.
    BERTH_LOGIN_MAX_PER_IP: '100000',
    BERTH_LOGIN_MAX_PER_USERNAME: '100000',
    BERTH_REGISTER_MAX_PER_IP: '100000',
    BERTH_REGISTER_MAX_PER_USERNAME: '100000',
    BERTH_PASSWORD_CHANGE_MAX_PER_IP: '100000',
    BERTH_PASSWORD_CHANGE_MAX_PER_USER: '100000',
    ...env,
  });
  const prisma = createPrisma(db.target);
  const keyring = Keyring.open(config.jwt.keysDir);
  const app = await buildApp(config, {
    prisma,
    keyring,
    logStream: opts.logStream,
    instanceId: opts.instanceId,
    resolveHost: opts.resolveHost,
    observe: checkAnswersAgainstDocument(disagreements),
  });
  await app.ready();
  return {
    app,
    target: db.target,
    prisma,
    config,
    keyring,
    dataDir,
    async close() {
      await app.close(); // waits for builds still running; leaves VMs running, as berth does
      const vmsDir = path.join(dataDir, 'vms');
      for (const vm of fs.existsSync(vmsDir) ? fs.readdirSync(vmsDir) : []) await stopVm(path.join(vmsDir, vm));
      // The engine images this app built (its own records only: never a developer's images).
      const built = await prisma.image.findMany({ select: { id: true } }).catch(() => []);
      const docker = new Docker({ socketPath: config.dockerSocket });
      await Promise.all(built.map((i) => docker.getImage(dockerTag(i)).remove({ force: true }).catch(() => {})));
      await prisma.$disconnect();
      await db.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      assertAnswersAgreeWithDocument();
    },
  };
}

export const PASSWORD = 'correct horse battery staple';

export interface Session {
  userId: string;
  username: string;
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  auth: { authorization: string };
}

export function json<T = any>(res: LightMyRequestResponse): T {
  return res.json() as T;
}

export async function register(app: FastifyInstance, username: string, password = PASSWORD, email?: string) {
  const res = await app.inject({ method: 'POST', url: '/v1/register', payload: { username, password, ...(email && { email }) } });
  if (res.statusCode !== 201) throw new Error(`register ${username}: ${res.statusCode} ${res.body}`);
  return json<{ id: string; username: string }>(res);
}

export async function login(app: FastifyInstance, username: string, password = PASSWORD): Promise<Session> {
  const res = await app.inject({ method: 'POST', url: '/v1/token', payload: { username, password } });
  if (res.statusCode !== 200) throw new Error(`login ${username}: ${res.statusCode} ${res.body}`);
  const body = json(res);
  const who = json(await app.inject({ method: 'GET', url: '/v1/whoami', headers: { authorization: `Bearer ${body.access_token}` } }));
  return {
    userId: who.id,
    username,
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    sessionId: body.session_id,
    auth: { authorization: `Bearer ${body.access_token}` },
  };
}

/** Creates an admin straight in the database (as the first-start bootstrap does) and logs in. */
export async function adminSession(t: TestApp, username = 'root-admin'): Promise<Session> {
  const hasher = await createPasswordHasher(t.config.argon2);
  await t.prisma.user.create({ data: { username, role: 'admin', passwordHash: await hasher.hash(PASSWORD) } });
  return login(t.app, username);
}

export async function userSession(t: TestApp, username: string): Promise<Session> {
  await register(t.app, username);
  return login(t.app, username);
}
