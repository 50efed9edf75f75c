// VMs used from elsewhere, kept off their host, and pooled across hosts — with real
// hosts: network namespaces on a private LAN. Host A and host B each run their own berth
// and their own QEMU, on one database; a "laptop" with no route to either host's loopback
// reserves, logs in with plain OpenSSH and strict host-key checking, and releases; an
// "internet" host stands in for the world outside.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../src/infra/ssh.js';
import { stopVm } from '../../src/infra/vm/qemu.js';
import { createMigratedDatabase } from '../helpers/db.js';
import { createLan, type Lan, type NetHost } from '../helpers/netns.js';
import { callJson, startServer, type ServerProcess } from '../helpers/server-process.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

const ADMIN_PASSWORD = 'vm hosts admin passphrase';
const PASSWORD = 'correct horse battery staple';
const PORT = 8080;
const BOOT_WAIT_MS = 180_000;

let lan: Lan;
let hostA: NetHost;
let hostB: NetHost;
let laptop: NetHost;
let internet: NetHost;
let berthA: ServerProcess;
let berthB: ServerProcess;
let dropDb: () => Promise<void>;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-hosts-'));
const listeners: ChildProcess[] = [];
const userKey = generateSshKeyPair('laptop user');
const keyFile = path.join(dir, 'id_ed25519');

const urlOf = (h: NetHost) => `http://${h.address}:${PORT}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP listener (python's HTTP server) inside `host`, on `bind`. */
async function listen(host: NetHost, bind: string, port: number): Promise<void> {
  const [command, ...args] = host.wrap(['python3', '-m', 'http.server', String(port), '--bind', bind]);
  listeners.push(spawn(command!, args, { stdio: 'ignore' }));
  for (let i = 0; i < 50; i++) {
    if ((await host.exec(['bash', '-c', `exec 3<>/dev/tcp/${bind}/${port}`]).then(() => true, () => false))) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${bind}:${port} in ${host.ns}`);
}

async function token(base: string, username: string, password: string): Promise<string> {
  const r = await callJson(base, 'POST', '/v1/token', undefined, { username, password });
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

/** Builds a one-step image through `base` and waits until it is ready. */
async function buildImage(base: string, admin: string, name: string): Promise<string> {
  const r = await callJson(base, 'POST', '/v1/images', admin, { name, dockerfile: `FROM ${BASE_IMAGE}\nRUN echo ${name} > /etc/image-name\n` });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  for (const deadline = Date.now() + 240_000; Date.now() < deadline; await sleep(1000)) {
    const img = (await callJson(base, 'GET', `/v1/images/${r.body.id}`, admin)).body;
    if (img.status === 'ready') return r.body.id;
    if (img.status === 'failed') throw new Error(`image ${name} failed: ${img.error}`);
  }
  throw new Error(`image ${name} not ready in time`);
}

/** Creates a VM through `base` and waits until it runs. */
async function runningVm(base: string, admin: string, image: string): Promise<{ id: string; name: string; ssh: { host: string; port: number } }> {
  const r = await callJson(base, 'POST', '/v1/vms', admin, { image });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  let vm: any;
  for (const deadline = Date.now() + BOOT_WAIT_MS; Date.now() < deadline; await sleep(500)) {
    vm = (await callJson(base, 'GET', `/v1/vms/${r.body.id}`, admin)).body;
    if (vm.state === 'running' && vm.machine_status === 'available') return vm;
    if (vm.state === 'failed') break;
  }
  const console = await fetch(`${base}/v1/vms/${r.body.id}/console`, { headers: { authorization: `Bearer ${admin}` } }).then((res) => res.text());
  throw new Error(`VM not running: ${JSON.stringify(vm)}\n${console.slice(-1500)}`);
}

/** OpenSSH on the laptop, as a person runs it: strict host-key checking with berth's known_hosts only. */
function sshFromLaptop(knownHosts: string, m: { host: string; port: number }, command: string) {
  const file = path.join(dir, `known_hosts-${m.port}`);
  fs.writeFileSync(file, knownHosts);
  return laptop.exec([
    'ssh', '-i', keyFile, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'LogLevel=ERROR',
    '-o', `UserKnownHostsFile=${file}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=20', '-p', String(m.port), `carol@${m.host}`, command,
  ]);
}

/** From inside the guest, as root: whether a TCP connection to `address:port` opens within 5 s. */
async function guestReaches(knownHosts: string, m: { host: string; port: number }, address: string, port: number): Promise<boolean> {
  const r = await sshFromLaptop(knownHosts, m, `sudo -n timeout 5 bash -c 'exec 3<>/dev/tcp/${address}/${port}' && echo open || echo closed`);
  return r.stdout.trim() === 'open';
}

beforeAll(async () => {
  fs.writeFileSync(keyFile, userKey.private, { mode: 0o600 });
  lan = await createLan();
  [hostA, hostB, laptop, internet] = [await lan.addHost('a'), await lan.addHost('b'), await lan.addHost('laptop'), await lan.addHost('inet')];
  await lan.attachTest();
  // Host A lets guests reach the internet (not A itself); host B lets them reach nothing.
  const db = await createMigratedDatabase('hosts');
  dropDb = db.drop;
  const shared = {
    ADMIN_PASSWORD,
    DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(db.target.socketPath!)}`,
    BERTH_JWT_KEYS_DIR: path.join(dir, 'keys'),
    BERTH_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'),
    BERTH_CACHE_DIR: path.resolve('.data/cache'),
    BERTH_VM_ACCEL: 'tcg',
    BERTH_VM_WATCH_SECONDS: '1',
    BERTH_EXPIRY_INTERVAL_SECONDS: '2',
    HOST: '0.0.0.0',
    PORT: String(PORT),
  };
  const env = (h: NetHost, name: string, egress: string) => ({
    ...shared,
    BERTH_DATA_DIR: path.join(dir, name),
    BERTH_NODE_NAME: `host-${name}`,
    BERTH_VM_BIND: h.address,
    BERTH_VM_EGRESS: egress,
  });
  berthA = await startServer(env(hostA, 'a', 'internet'), 120_000, hostA.wrap);
  berthB = await startServer(env(hostB, 'b', 'none'), 120_000, hostB.wrap);
}, 300_000);

afterAll(async () => {
  await berthA?.stop();
  await berthB?.stop();
  for (const host of ['a', 'b']) {
    const vmsDir = path.join(dir, host, 'vms');
    for (const vm of fs.existsSync(vmsDir) ? fs.readdirSync(vmsDir) : []) await stopVm(path.join(vmsDir, vm));
  }
  for (const l of listeners) l.kill('SIGKILL');
  await lan?.destroy();
  await dropDb?.();
  fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('VM hosts', () => {
  it('serve a laptop, keep guests off their host, and pool VMs across hosts', { timeout: 900_000 }, async () => {
    const [a, b] = [urlOf(hostA), urlOf(hostB)];
    const admin = await token(a, 'admin', ADMIN_PASSWORD);
    const [imageA, imageB] = [await buildImage(a, admin, 'img-a'), await buildImage(b, await token(b, 'admin', ADMIN_PASSWORD), 'img-b')];
    const vmA = await runningVm(a, admin, imageA);
    const vmB = await runningVm(b, admin, imageB);
    expect(vmA.ssh).toMatchObject({ host: hostA.address });
    expect(vmB.ssh).toMatchObject({ host: hostB.address });

    // The laptop: berth and VMs only through the LAN; it has no route to any host's loopback.
    expect((await callJson(a, 'POST', '/v1/register', undefined, { username: 'carol', password: PASSWORD })).status).toBe(201);
    const reserveFromLaptop = async (machine: string) => {
      const login = JSON.parse((await laptop.exec(['curl', '-s', '-H', 'content-type: application/json', '-d', JSON.stringify({ username: 'carol', password: PASSWORD }), `${a}/v1/token`])).stdout);
      const body = JSON.stringify({ machines: [machine], ssh_public_key: userKey.public, duration_minutes: 30 });
      const out = await laptop.exec(['curl', '-s', '-H', `authorization: Bearer ${login.access_token}`, '-H', 'content-type: application/json', '-d', body, `${a}/v1/reservations`]);
      return { reservation: JSON.parse(out.stdout), access: login.access_token as string };
    };

    // Through host A, a VM that runs on host B: reached at B's address, with B's key pinned.
    const { reservation: onB, access } = await reserveFromLaptop(vmB.name);
    expect(onB.status, JSON.stringify(onB)).toBe('active');
    const m = onB.machines[0];
    expect(m).toMatchObject({ host: hostB.address, port: vmB.ssh.port });
    const who = await sshFromLaptop(onB.known_hosts, m, 'id -un; cat /etc/image-name; hostname -f; sudo -n true; echo mine > ~/left-behind');
    expect(who.stdout.split('\n').slice(0, 2)).toEqual(['carol', 'img-b']);
    expect(who.stdout.split('\n')[2]).toMatch(new RegExp(vmB.name));
    // A guest that behaves like a host: its name resolves (sudo says nothing), logins are not slowed by DNS.
    expect(who.stderr).toBe('');
    // Under BERTH_VM_EGRESS=none the guest reaches nothing: not its host, not the internet.
    await listen(internet, internet.address, 18081);
    expect(await guestReaches(onB.known_hosts, m, internet.address, 18081)).toBe(false);
    expect(await guestReaches(onB.known_hosts, m, '10.0.2.2', PORT)).toBe(false);

    // Released through A: B resets its VM (handed over through the database), and it comes back clean.
    const released = await laptop.exec(['curl', '-s', '-X', 'DELETE', '-H', `authorization: Bearer ${access}`, `${a}/v1/reservations/${onB.id}`]);
    expect(JSON.parse(released.stdout).status).toBe('released');
    const backInPool = async (id: string) => {
      for (const deadline = Date.now() + BOOT_WAIT_MS; Date.now() < deadline; await sleep(500)) {
        const vm = (await callJson(a, 'GET', `/v1/vms/${id}`, admin)).body;
        if (vm.machine_status === 'available' && vm.pending_action === null && vm.state === 'running') return vm;
      }
      throw new Error('the VM did not come back');
    };
    const back = await backInPool(vmB.id);
    expect(back.node).toBe('host-b');
    const { reservation: again } = await reserveFromLaptop(vmB.name);
    expect((await sshFromLaptop(again.known_hosts, again.machines[0], 'ls ~/left-behind 2>/dev/null || echo clean')).stdout.trim()).toBe('clean');

    // Host A lets its guests out to the internet, but not to A itself.
    const { reservation: onA } = await reserveFromLaptop(vmA.name);
    const mA = onA.machines[0];
    await listen(hostA, '127.0.0.1', 18082);
    expect(await guestReaches(onA.known_hosts, mA, internet.address, 18081)).toBe(true);
    expect(await guestReaches(onA.known_hosts, mA, '10.0.2.2', 18082)).toBe(false); // A's loopback, through QEMU
    expect(await guestReaches(onA.known_hosts, mA, hostA.address, PORT)).toBe(false); // berth on A
    expect(await guestReaches(onA.known_hosts, mA, hostA.address, mA.port)).toBe(false); // a forwarded SSH port on A

    // Host B's berth dies: its VMs leave the pool, and /v1/vms says B is down.
    await laptop.exec(['curl', '-s', '-X', 'DELETE', '-H', `authorization: Bearer ${access}`, `${a}/v1/reservations/${again.id}`]);
    await backInPool(vmB.id);
    berthB.child.kill('SIGKILL');
    const down = await (async () => {
      for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(1000)) {
        const vm = (await callJson(a, 'GET', `/v1/vms/${vmB.id}`, admin)).body;
        if (vm.node_status === 'down' && vm.machine_status !== 'available') return vm;
      }
      throw new Error('B was not seen down');
    })();
    expect(down).toMatchObject({ node_status: 'down', machine_status: 'offline' });
    const reserve = await callJson(a, 'POST', '/v1/reservations', access, { machines: [vmB.name] });
    expect(reserve.body.code).toBe('insufficient_capacity');
  });
});
