// The compose deployment, run for real on this machine's engine (Debian's docker-compose
// 1.29): local stand-ins replace the upstream base images (no registry is reachable; see
// scripts/build-compose-standins.sh and the README for what that proves and what not).
// The stack is reached the way users reach it, over HTTPS through the compose Caddy with
// its CA trusted; every container is then recreated and what must live in the volumes is
// checked; finally the VM variant builds an image through the host's engine.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/infra/ports.js';
import { PASSWORD } from '../helpers/app.js';
import { BASE_IMAGE, rootKey } from '../helpers/ssh-machines.js';

const run = promisify(execFile);
const docker = new Docker({ socketPath: '/var/run/docker.sock' });
/** One project per checkout: several checkouts' suites may share this engine. */
const PROJECT = `berth-compose-${process.env.BERTH_TEST_RUN ?? 'dev'}`;
const PLAIN = ['docker-compose.yml'];
/** The VM variant, with KVM where the host has it (as the README says to run it). */
const VM = ['docker-compose.yml', 'docker-compose.vm.yml', ...(fs.existsSync('/dev/kvm') ? ['docker-compose.kvm.yml'] : [])];
const MINUTE = 60_000;

let env: Record<string, string>;
let baseUrl = '';
let dispatcher: Agent;

async function compose(files: string[], args: string[], extraEnv: Record<string, string> = env) {
  const argv = ['-p', PROJECT, ...files.flatMap((f) => ['-f', f]), ...args];
  try {
    return await run('docker-compose', argv, { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...extraEnv }, maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`docker-compose ${args.join(' ')} failed:\n${(e.stderr ?? '').slice(-4000)}\n${(e.stdout ?? '').slice(-2000)}`, { cause: err });
  }
}

const call = (pathname: string, init: Parameters<typeof fetch>[1] = {}) => fetch(`${baseUrl}${pathname}`, { ...init, dispatcher });
const post = (pathname: string, body: unknown, token?: string) =>
  call(pathname, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
const get = (pathname: string, token: string) => call(pathname, { headers: { authorization: `Bearer ${token}` } });

async function login(username: string, password: string): Promise<string> {
  const res = await post('/v1/token', { username, password });
  expect(res.status, `login ${username}`).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** Waits until berth answers ready through Caddy (the CA must be trusted already). */
async function ready(timeoutMs = 3 * MINUTE): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  let last: string;
  for (;;) {
    try {
      const res = await call('/readyz');
      if (res.status === 200) return (await res.json()) as Record<string, any>;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = String((err as { cause?: unknown }).cause ?? err);
    }
    if (Date.now() > deadline) throw new Error(`berth is not ready through the compose Caddy: ${last}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Caddy's local root, read from its data volume once Caddy has made it. */
async function caddyRoot(): Promise<string> {
  const deadline = Date.now() + MINUTE;
  for (;;) {
    const out = await compose(PLAIN, ['exec', '-T', 'caddy', 'cat', '/data/caddy/pki/authorities/local/root.crt']).catch(() => null);
    if (out?.stdout.includes('BEGIN CERTIFICATE')) return out.stdout;
    if (Date.now() > deadline) throw new Error('the compose Caddy made no local CA');
    await new Promise((r) => setTimeout(r, 500));
  }
}

const containerIds = async () => (await compose(PLAIN, ['ps', '-q'])).stdout.trim().split('\n').sort();

beforeAll(async () => {
  const { stdout } = await run('bash', ['scripts/build-compose-standins.sh'], { maxBuffer: 16 << 20 });
  const [node, mariadb, caddy] = stdout.trim().split('\n');
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  env = {
    DB_PASSWORD: randomBytes(16).toString('hex'),
    ADMIN_PASSWORD: `admin ${randomBytes(9).toString('base64url')}`,
    BERTH_NODE_IMAGE: node!,
    BERTH_MARIADB_IMAGE: mariadb!,
    BERTH_CADDY_IMAGE: caddy!,
    BERTH_BUILD_NETWORK: 'host',
    // Published on loopback only: nothing of this test is reachable from elsewhere.
    BERTH_HTTP_PORT: `127.0.0.1:${httpPort}`,
    BERTH_HTTPS_PORT: `127.0.0.1:${httpsPort}`,
  };
  baseUrl = `https://localhost:${httpsPort}`;
  await compose(VM, ['down', '-v', '--remove-orphans']); // what a killed run may have left
  await compose(PLAIN, ['up', '-d', '--build']);
  dispatcher = new Agent({ connect: { ca: await caddyRoot() } });
  await ready();
}, 20 * MINUTE);

afterAll(async () => {
  await docker
    .listContainers({ all: true, filters: { label: [`berth-compose-test=${PROJECT}`] } })
    .then((list) => Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }))))
    .catch(() => {});
  if (env) await compose(VM, ['down', '-v', '--remove-orphans']);
}, 5 * MINUTE);

describe('docker-compose.yml', () => {
  it('validates (docker-compose config), with the upstream base images by default', async () => {
    const required = { DB_PASSWORD: 'x', ADMIN_PASSWORD: 'y' };
    const plain = (await compose(PLAIN, ['config'], required)).stdout;
    expect(plain).toContain('image: mariadb:10.11');
    expect(plain).toContain('image: caddy:2');
    expect(plain).toMatch(/NODE_IMAGE: node:20-bookworm-slim/);
    expect(plain).toMatch(/target: runtime/);
    const vm = (await compose(['docker-compose.yml', 'docker-compose.vm.yml', 'docker-compose.kvm.yml'], ['config'], required)).stdout;
    expect(vm).toMatch(/target: vm/);
    expect(vm).toMatch(/user: root/);
    expect(vm).toContain('/var/run/docker.sock:/var/run/docker.sock');
    expect(vm).toContain('/dev/kvm:/dev/kvm');
    // Without the secrets it refuses to render rather than start with empty ones.
    await expect(compose(PLAIN, ['config'], {})).rejects.toThrow(/DB_PASSWORD/);
  });

  it('serves berth over HTTPS through the compose Caddy, its local CA trusted', async () => {
    const readiness = await ready();
    expect(readiness).toMatchObject({ status: 'ready', database: 'ok' });
    const doc = (await (await call('/openapi.json')).json()) as { servers: { url: string }[] };
    expect(doc.servers[0]!.url).toBe('https://localhost');
    const admin = await login('admin', env.ADMIN_PASSWORD!);
    expect(((await (await get('/v1/whoami', admin)).json()) as { role: string }).role).toBe('admin');
    // Without the root, TLS verification stops the client.
    await expect(fetch(`${baseUrl}/healthz`)).rejects.toThrow();
  });

  it('keeps users, signing keys, sessions, machines and their sealed credentials when every container is recreated', async () => {
    expect((await post('/v1/register', { username: 'compose-user', password: PASSWORD })).status).toBe(201);
    const userToken = await login('compose-user', PASSWORD);
    const admin = await login('admin', env.ADMIN_PASSWORD!);

    // A machine berth reaches on the compose network: an sshd container with root's key.
    const network = `${PROJECT}_default`;
    const sshbox = await docker.createContainer({
      Image: BASE_IMAGE,
      Labels: { 'berth-compose-test': PROJECT },
      Env: [`AUTHORIZED_KEY=${rootKey.public}`],
      Cmd: [
        'sh',
        '-c',
        'ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key && install -d -m 700 /root/.ssh && ' +
          'printf "%s\\n" "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && ' +
          'exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PermitRootLogin=prohibit-password',
      ],
      HostConfig: { NetworkMode: network },
      NetworkingConfig: { EndpointsConfig: { [network]: { Aliases: ['sshbox'] } } },
    });
    await sshbox.start();
    const created = await post('/v1/machines', { name: 'box-1', host: 'sshbox', port: 22, username: 'root', private_key: rootKey.private }, admin);
    expect(created.status, await created.clone().text()).toBe(201);
    let first: { reachable: boolean; host_key_fingerprint: string } | undefined;
    for (let i = 0; i < 20 && !first?.reachable; i++) {
      if (i) await new Promise((r) => setTimeout(r, 500)); // sshd may still be starting
      first = (await (await post('/v1/machines/box-1/check', {}, admin)).json()) as typeof first;
    }
    expect(first).toMatchObject({ reachable: true, host_key_fingerprint: expect.stringMatching(/^SHA256:/) });

    const before = await containerIds();
    await compose(PLAIN, ['up', '-d', '--force-recreate']);
    expect(await containerIds()).not.toEqual(before);
    await ready(); // with the root trusted before: Caddy's CA is still the one in its volume

    // The token issued before: same signing keys (berth-data), same live session (db).
    const who = await get('/v1/whoami', userToken);
    expect(who.status).toBe(200);
    expect(((await who.json()) as { username: string }).username).toBe('compose-user');
    const adminAgain = await login('admin', env.ADMIN_PASSWORD!);
    const users = (await (await get('/v1/users?q=compose-user', adminAgain)).json()) as { items: { username: string }[] };
    expect(users.items.map((u) => u.username)).toEqual(['compose-user']);
    // The machine, its pinned host key and its credential, which only secret.key (berth-data) opens.
    const again = (await (await post('/v1/machines/box-1/check', {}, adminAgain)).json()) as typeof first;
    expect(again).toMatchObject({ reachable: true, host_key_fingerprint: first!.host_key_fingerprint });
  }, 5 * MINUTE);
});

describe('docker-compose.vm.yml (+ docker-compose.kvm.yml where /dev/kvm exists)', () => {
  it("gives berth the host's engine, QEMU and a kernel: it builds an image", async () => {
    await compose(VM, ['up', '-d', '--build', 'berth']);
    // VMs are ready once the kernel and the accelerator are known (a KVM probe takes up to 5 s).
    const deadline = Date.now() + 2 * MINUTE;
    let readiness = await ready();
    while (readiness.capabilities?.vm?.accel == null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      readiness = await ready();
    }
    expect(readiness.capabilities).toMatchObject({ docker: { available: true }, vm: { accel: expect.stringMatching(/^(kvm|tcg)$/) } });

    const admin = await login('admin', env.ADMIN_PASSWORD!);
    const nonce = randomBytes(6).toString('hex');
    const res = await post('/v1/images', { name: 'compose-devbox', dockerfile: `FROM ${BASE_IMAGE}\nRUN echo built-in-compose-${nonce} > /etc/motd\n` }, admin);
    expect(res.status, await res.clone().text()).toBe(202);
    const { id } = (await res.json()) as { id: string };
    let image: { status: string; error: string | null; size_bytes: number | null } = { status: 'building', error: null, size_bytes: null };
    for (const end = Date.now() + 5 * MINUTE; image.status === 'building' && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 1000));
      image = (await (await get(`/v1/images/${id}`, admin)).json()) as typeof image;
    }
    const log = await (await get(`/v1/images/${id}/log`, admin)).text();
    expect(image, log).toMatchObject({ status: 'ready', error: null });
    expect(log).toContain(`built-in-compose-${nonce}`);
    expect(image.size_bytes).toBeGreaterThan(0); // converted into an ext4 base inside the container
    expect((await call(`/v1/images/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${admin}` } })).status).toBe(204);
    await docker.getImage(`berth/image-${id}:latest`).remove({ force: true }).catch(() => {});
  }, 15 * MINUTE);
});
