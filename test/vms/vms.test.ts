// VMs end to end on the real Docker engine and real QEMU (TCG here): an admin builds an
// image, boots VMs that join the pool (cold until the image's template snapshot is made,
// clones of it after), a user reserves one, logs in, breaks it, releases it and it comes
// back clean, as a clone with a new host key; stop/start keep the writable layer, reset
// discards it; a dead QEMU is noticed; the pool grows and shrinks around reservations; a
// restarted berth re-adopts the VMs it left running.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox, loadSecretKey } from '../../src/infra/secret-box.js';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { BASE_IMAGE, sshRun } from '../helpers/ssh-machines.js';

const ENV = { BERTH_VM_ACCEL: 'tcg', BERTH_VM_WATCH_SECONDS: '1' };
/** Boots under software emulation share 2 cores with the rest of the suite. */
const BOOT_WAIT_MS = 150_000;
const NONCE = randomUUID();

let t: TestApp;
let restarted: TestApp | null = null;
let admin: Session;
let alice: Session;
let imageId: string;

const app = () => (restarted ?? t).app;

async function call(session: Session | null, method: string, url: string, payload?: unknown) {
  const res = await app().inject({ method: method as 'GET', url, headers: session?.auth ?? {}, ...(payload !== undefined && { payload: payload as object }) });
  return { status: res.statusCode, body: String(res.headers['content-type']).includes('json') ? json(res) : res.body };
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = BOOT_WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function vm(id: string) {
  return (await call(admin, 'GET', `/v1/vms/${id}`)).body;
}

async function untilRunning(id: string) {
  return waitFor(`VM ${id} running with its machine available`, async () => {
    const v = await vm(id);
    if (v.state === 'failed') throw new Error(`VM failed: ${v.state_reason}\n${(await call(admin, 'GET', `/v1/vms/${id}/console`)).body.slice(-2000)}`);
    return v.state === 'running' && v.machine_status === 'available' && v;
  });
}

/** berth's own root login into a VM (the machine's sealed credential), as an operator could. */
async function asRoot(id: string, command: string) {
  const v = await vm(id);
  const machine = await t.prisma.machine.findUniqueOrThrow({ where: { name: v.machine_name } });
  const key = createSecretBox(loadSecretKey(undefined, t.dataDir)).open(machine.credential);
  return sshRun({ host: '127.0.0.1', port: v.ssh.port, username: 'root', privateKey: key }, command);
}

/** The image's template for berth's default VM shape, made in the background once the image is ready. */
const templateReady = () =>
  waitFor('the image template', async () => fs.existsSync(path.join(t.dataDir, 'images', imageId, 'templates', '1cpu-512mb', 'template.json')), 300_000);

async function reserve(session: Session, machine: string) {
  const res = await call(session, 'POST', '/v1/reservations', { machines: [machine] });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as { id: string; account: { username: string; password: string } };
}

beforeAll(async () => {
  t = await createTestApp(ENV);
  admin = await adminSession(t);
  alice = await userSession(t, 'alice');
  const dockerfile = [
    `FROM ${BASE_IMAGE}`,
    `RUN echo ${NONCE} > /etc/berth-test-nonce`,
    // The image's own command runs after sshd, as in a container.
    'CMD ["/bin/sh", "-c", "echo ran > /run/image-command; exec sleep infinity"]',
  ].join('\n');
  const res = await call(admin, 'POST', '/v1/images', { name: 'vmtest', dockerfile });
  expect(res.status).toBe(202);
  imageId = res.body.id;
  const image = await waitFor('the image', async () => {
    const i = (await call(admin, 'GET', `/v1/images/${imageId}`)).body;
    return i.status !== 'building' && i;
  }, 300_000);
  expect(image.status, image.error).toBe('ready');
}, 320_000);

afterAll(async () => {
  await call(admin, 'POST', '/v1/reservations/release-all');
  await restarted?.close();
  await t.close();
});

describe('VMs', () => {
  let first: string;

  it('boot from an image and join the pool as a machine of type vm', async () => {
    const res = await call(admin, 'POST', '/v1/vms', { image: 'vmtest', name: 'vmtest-a', cpus: 1, memory_mb: 512 });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect(res.body).toMatchObject({ name: 'vmtest-a', state: 'booting' });
    first = res.body.id;

    const v = await untilRunning(first);
    expect(v.boot_ms).toBeGreaterThan(0);
    // Made at once, the template cannot be ready yet: this one booted cold.
    expect(v.start_mode).toBe('cold');
    expect(v.ssh).toMatchObject({ host: '127.0.0.1', host_key_fingerprint: expect.stringMatching(/^SHA256:/) });
    const machine = (await call(admin, 'GET', '/v1/machines/vmtest-a')).body;
    expect(machine).toMatchObject({ type: 'vm', tags: { image: 'vmtest' }, status: 'available', host_key_fingerprint: v.ssh.host_key_fingerprint });
    console.log(`POST /v1/vms → running: boot_ms ${v.boot_ms}`);

    // The image's content and its own command; the console shows berth's init.
    const inside = await asRoot(first, 'cat /etc/berth-test-nonce /run/image-command; hostname');
    expect(inside.stdout.split('\n')).toEqual([NONCE, 'ran', 'vmtest-a']);
    const consoleText = await call(admin, 'GET', `/v1/vms/${first}/console`);
    expect(consoleText.status).toBe(200);
    expect(consoleText.body).toContain('berth-init: sshd started');

    // Its machine record is berth's: changed and removed only with the VM.
    expect((await call(admin, 'PATCH', '/v1/machines/vmtest-a', { port: 22 })).body.code).toBe('machine_is_vm');
    expect((await call(admin, 'DELETE', '/v1/machines/vmtest-a')).body.code).toBe('machine_is_vm');
    expect((await call(admin, 'PUT', '/v1/machines/vmtest-a/maintenance', { reason: 'x' })).body.code).toBe('machine_is_vm');
    expect((await call(admin, 'POST', '/v1/machines/vmtest-a/check')).body.code).toBe('machine_is_vm');

    const ready = (await call(null, 'GET', '/readyz')).body;
    expect(ready.capabilities.vm).toEqual({ accel: 'tcg' });
    expect(ready.capabilities.docker.available).toBe(true);
  }, BOOT_WAIT_MS + 30_000);

  it('refuses bad requests with problems, booting nothing', async () => {
    const post = (body: unknown) => call(admin, 'POST', '/v1/vms', body);
    expect((await post({ image: 'no-such-image' })).body).toMatchObject({ status: 404, code: 'image_not_found' });
    expect((await post({ image: 'vmtest', name: 'vmtest-a' })).body).toMatchObject({ status: 409, code: 'vm_exists' });
    expect((await post({ image: 'vmtest', cpus: 64 })).body).toMatchObject({ status: 422, code: 'vm_limits_exceeded' });
    expect((await post({ image: 'vmtest', memory_mb: 64 })).status).toBe(400);
    expect((await post({ image: 'vmtest', name: 'Bad Name' })).status).toBe(400);
    expect((await post({ image: 'vmtest', extra: 1 })).status).toBe(400);
    expect((await call(alice, 'POST', '/v1/vms', { image: 'vmtest' })).status).toBe(403);
    expect((await call(admin, 'GET', `/v1/vms/${randomUUID()}`)).body.code).toBe('vm_not_found');
    expect((await call(admin, 'PUT', `/v1/images/${imageId}/pool`, { size: -1 })).status).toBe(400);
    expect((await call(admin, 'GET', '/v1/vms')).body.items).toHaveLength(1);
  });

  it('a reservation gives a working login inside the VM; its release resets the VM, as a clone of the template', async () => {
    await templateReady();
    const r = await reserve(alice, 'vmtest-a');
    const pinnedBefore = (await vm(first)).ssh.host_key_fingerprint;
    const login = { host: '127.0.0.1', port: (await vm(first)).ssh.port, username: r.account.username, password: r.account.password };
    const broken = await sshRun(login, 'id -un && echo mine > ~/file && sudo -n sh -c "echo broken > /etc/broken && rm -f /etc/berth-test-nonce" && echo done');
    expect(broken.stdout.trim().split('\n'), broken.stderr).toEqual([r.account.username, 'done']);

    const released = await call(alice, 'DELETE', `/v1/reservations/${r.id}`);
    expect(released.status).toBe(200);
    expect(released.body.status).toBe('released');
    // Back in the pool only once it has booted clean.
    expect((await call(admin, 'GET', '/v1/machines/vmtest-a')).body.status).not.toBe('available');
    const again = await untilRunning(first);
    expect(again.start_mode).toBe('restore');
    // A new host key too: the last user was root inside and could read the old one.
    expect(again.ssh.host_key_fingerprint).not.toBe(pinnedBefore);
    expect((await call(admin, 'GET', '/v1/machines/vmtest-a')).body.host_key_fingerprint).toBe(again.ssh.host_key_fingerprint);

    const clean = await asRoot(first, `cat /etc/berth-test-nonce; ls /etc/broken 2>&1; getent passwd ${r.account.username} || echo no-account`);
    expect(clean.stdout.trim().split('\n')).toEqual([NONCE, expect.stringContaining('No such file'), 'no-account']);
  }, 2 * BOOT_WAIT_MS);

  it('stop and start keep the writable layer; reset discards it', async () => {
    expect((await asRoot(first, 'echo kept > /root/keep && sync')).code).toBe(0);
    const stopped = await call(admin, 'POST', `/v1/vms/${first}/stop`);
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({ state: 'stopped', machine_status: 'offline' });
    expect((await call(alice, 'POST', '/v1/reservations', { machines: ['vmtest-a'] })).status).toBe(409);

    expect((await call(admin, 'POST', `/v1/vms/${first}/start`)).status).toBe(202);
    // Its own disk is not the template's: only a boot can start from it.
    expect((await untilRunning(first)).start_mode).toBe('cold');
    expect((await asRoot(first, 'cat /root/keep')).stdout.trim()).toBe('kept');

    const pinnedBefore = (await vm(first)).ssh.host_key_fingerprint;
    const machineIdBefore = (await asRoot(first, 'cat /etc/machine-id')).stdout.trim();
    const reset = await call(admin, 'POST', `/v1/vms/${first}/reset`);
    expect(reset.status).toBe(202);
    expect(reset.body.state).toBe('booting');
    const clone = await untilRunning(first);
    // A clone again: a new host key (pinned on its machine), a new machine-id, nothing it wrote.
    expect(clone.start_mode).toBe('restore');
    expect(clone.ssh.host_key_fingerprint).not.toBe(pinnedBefore);
    expect((await call(admin, 'GET', '/v1/machines/vmtest-a')).body.host_key_fingerprint).toBe(clone.ssh.host_key_fingerprint);
    const inside = (await asRoot(first, 'cat /root/keep 2>/dev/null || echo gone; cat /etc/machine-id; hostname; cat /etc/berth-test-nonce /run/image-command')).stdout.trim().split('\n');
    expect(inside[0]).toBe('gone');
    expect(inside[1]).toMatch(/^[0-9a-f]{32}$/);
    expect(inside[1]).not.toBe(machineIdBefore);
    expect(inside.slice(2)).toEqual(['vmtest-a', NONCE, 'ran']);
  }, 3 * BOOT_WAIT_MS);

  it('notices a QEMU that died: the VM fails and its machine goes offline', async () => {
    const pid = (await t.prisma.vm.findUniqueOrThrow({ where: { id: first } })).pid!;
    process.kill(pid, 'SIGKILL');
    const failed = await waitFor('the VM marked failed', async () => {
      const v = await vm(first);
      return v.state === 'failed' && v;
    }, 20_000);
    expect(failed.state_reason).toMatch(/QEMU exited/);
    expect(failed.machine_status).toBe('offline');
    expect((await call(admin, 'POST', `/v1/vms/${first}/reset`)).status).toBe(202);
    await untilRunning(first);
  }, BOOT_WAIT_MS + 30_000);

  it('the pool keeps exactly `size` VMs, and never takes a reserved one', async () => {
    const grown = await call(admin, 'PUT', `/v1/images/${imageId}/pool`, { size: 3 });
    expect(grown.status, JSON.stringify(grown.body)).toBe(200);
    expect(grown.body.vms).toHaveLength(3);
    const members = await Promise.all(grown.body.vms.map((v: { id: string }) => untilRunning(v.id)));
    // The new ones are clones of the template.
    expect(members.filter((v) => v.id !== first).map((v) => v.start_mode)).toEqual(['restore', 'restore']);
    const pool = (await call(alice, 'GET', '/v1/machines?type=vm&tag=image:vmtest&status=available')).body;
    expect(pool.items).toHaveLength(3);

    const held = await call(alice, 'POST', '/v1/reservations', { count: 1, type: 'vm', tags: { image: 'vmtest' } });
    expect(held.status).toBe(201);
    const heldMachine = held.body.machines[0].name;

    const refused = await call(admin, 'PUT', `/v1/images/${imageId}/pool`, { size: 0 });
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('pool_reserved');
    expect((await call(admin, 'GET', `/v1/vms?image=vmtest`)).body.items).toHaveLength(3);

    const shrunk = await call(admin, 'PUT', `/v1/images/${imageId}/pool`, { size: 1 });
    expect(shrunk.status).toBe(200);
    expect(shrunk.body.vms.map((v: { name: string }) => v.name)).toEqual([heldMachine]);
    expect((await call(admin, 'GET', '/v1/machines?type=vm')).body.items.map((m: { name: string }) => m.name)).toEqual([heldMachine]);

    expect((await call(admin, 'DELETE', `/v1/images/${imageId}`)).body.code).toBe('image_in_use');
    expect((await call(admin, 'DELETE', `/v1/vms/${shrunk.body.vms[0].id}`)).status).toBe(409);
    first = shrunk.body.vms[0].id;
    expect((await call(alice, 'DELETE', `/v1/reservations/${held.body.id}`)).status).toBe(200);
    await untilRunning(first);
  }, 4 * BOOT_WAIT_MS);

  it('a restarted berth re-adopts the VMs it left running', async () => {
    const before = await t.prisma.vm.findUniqueOrThrow({ where: { id: first } });
    await t.app.close(); // berth stops; its VMs do not
    expect(() => process.kill(before.pid!, 0)).not.toThrow();

    restarted = await createTestApp(ENV, { shareWith: t, dataDir: t.dataDir });
    const v = await untilRunning(first);
    expect((await restarted.prisma.vm.findUniqueOrThrow({ where: { id: first } })).pid).toBe(before.pid);
    // Still a working pool machine under the new process.
    const r = await reserve(alice, v.machine_name);
    const out = await sshRun({ host: '127.0.0.1', port: v.ssh.port, username: r.account.username, password: r.account.password }, 'id -un');
    expect(out.stdout.trim()).toBe(r.account.username);
    expect((await call(alice, 'DELETE', `/v1/reservations/${r.id}`)).status).toBe(200);
    await untilRunning(first);

    expect((await call(admin, 'PUT', `/v1/images/${imageId}/pool`, { size: 0 })).status).toBe(200);
    expect((await call(admin, 'GET', '/v1/vms')).body.items).toEqual([]);
    expect((await call(admin, 'DELETE', `/v1/images/${imageId}`)).status).toBe(204);
  }, 2 * BOOT_WAIT_MS);
});
