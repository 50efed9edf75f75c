// Images on the real Docker engine: build, convert (from the engine's layers, or sharing
// the base of an image with the same engine image), log (streamed while building),
// failure reasons, delete.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerTag } from '../../src/modules/images/service.js';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { ABSENT_BASE } from '../helpers/docker.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

let t: TestApp;
let admin: Session;
let user: Session;
let url: string;
beforeAll(async () => {
  // Images only: no VM template snapshots are made of them.
  t = await createTestApp({ BERTH_IMAGE_CONTEXT_MAX_MB: '1', BERTH_VM_SNAPSHOTS: 'off' });
  admin = await adminSession(t);
  user = await userSession(t, 'alice');
  url = await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(() => t.close());

const create = (name: string, dockerfile: string, s = admin) =>
  t.app.inject({ method: 'POST', url: '/v1/images', headers: s.auth, payload: { name, dockerfile } });
async function settled(id: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const img = json(await t.app.inject({ method: 'GET', url: `/v1/images/${id}`, headers: admin.auth }));
    if (img.status !== 'building' || Date.now() > deadline) return img;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('building an image', () => {
  it('answers 202 at once, then becomes ready with its sizes, timings and config', async () => {
    const res = await create('devbox', `FROM ${BASE_IMAGE}\nRUN echo hello-from-the-build > /etc/motd\nENV GREETING=hi\nWORKDIR /root\n`);
    expect(res.statusCode).toBe(202);
    expect(json(res)).toMatchObject({ name: 'devbox', status: 'building' });
    const img = await settled(json(res).id);
    expect(img).toMatchObject({ status: 'ready', error: null, config: { workdir: '/root' } });
    expect(img.config.env).toContain('GREETING=hi');
    expect(img.size_bytes).toBeGreaterThan(100 << 20);
    expect(img.build_ms).toBeGreaterThan(0);
    expect(img.convert_ms).toBeGreaterThan(0);
    const log = await t.app.inject({ method: 'GET', url: `/v1/images/${img.id}/log`, headers: admin.auth });
    expect(log.headers['content-type']).toContain('text/plain');
    expect(log.body).toContain('Step 2/4 : RUN echo hello-from-the-build');
    // This host's engine keeps its layers with overlay2 and berth runs as root: no export.
    expect(log.body).toMatch(/berth: mounted the engine's layers in \d+ ms; made a \d+ MiB ext4 base in \d+ ms/);
  });

  it('streams the log while the build runs', async () => {
    // A nonce makes the step miss Docker's layer cache (kept between runs on a machine), so it really runs.
    const nonce = Math.random().toString(36).slice(2);
    const res = json(await create('slow', `FROM ${BASE_IMAGE}\nRUN echo run-${nonce} && echo first-line && sleep 3 && echo second-line\n`));
    const response = await fetch(`${url}/v1/images/${res.id}/log`, { headers: admin.auth });
    const reader = response.body!.getReader();
    let text = '';
    let statusWhenFirstSeen = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
      if (!statusWhenFirstSeen && /^first-line$/m.test(text)) {
        statusWhenFirstSeen = json(await t.app.inject({ method: 'GET', url: `/v1/images/${res.id}`, headers: admin.auth })).status;
      }
    }
    const final = await settled(res.id);
    expect(statusWhenFirstSeen, `log:\n${text}\nimage: ${JSON.stringify(final)}`).toBe('building');
    expect(text).toMatch(/^second-line$/m);
    expect(final.status).toBe('ready');
  });

  it('ends failed, with the reason, when a step fails or the image has no sshd', async () => {
    const bad = await settled(json(await create('broken', `FROM ${BASE_IMAGE}\nRUN exit 7\n`)).id);
    expect(bad).toMatchObject({ status: 'failed' });
    expect(bad.error).toContain('non-zero code: 7');
    const nossh = await settled(json(await create('no-sshd', `FROM ${BASE_IMAGE}\nRUN rm -f /usr/sbin/sshd\n`)).id);
    expect(nossh).toMatchObject({ status: 'failed' });
    expect(nossh.error).toContain('openssh-server');
    // A base no engine has, from a registry that cannot exist (.invalid, RFC 6761): failed everywhere.
    const missing = await settled(json(await create('no-base', `FROM ${ABSENT_BASE}\n`)).id);
    expect(missing.status).toBe('failed');
    expect(missing.error).toContain('registry.invalid');
  });

  it('builds a tar build context uploaded as the body, files and all', async () => {
    const dir = fs.mkdtempSync(path.join(t.dataDir, 'context-'));
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${BASE_IMAGE}\nCOPY hello.txt /etc/hello.txt\n`);
    fs.writeFileSync(path.join(dir, 'hello.txt'), 'from the context\n');
    const tarball = execFileSync('tar', ['-C', dir, '-cz', 'Dockerfile', 'hello.txt']);
    const post = (payload: Buffer, query = '?name=from-tar', type = 'application/x-tar') =>
      t.app.inject({ method: 'POST', url: `/v1/images${query}`, headers: { ...admin.auth, 'content-type': type }, payload });

    const res = await post(tarball);
    expect(res.statusCode, res.body).toBe(202);
    const img = await settled(json(res).id);
    expect(img.status, img.error).toBe('ready');
    const copied = execFileSync('docker', ['run', '--rm', '--network', 'none', dockerTag(img), 'cat', '/etc/hello.txt']).toString();
    expect(copied).toBe('from the context\n');

    // Bad uploads are the client's fault, and say what is wrong.
    expect(json(await post(tarball, ''))).toMatchObject({ status: 400, code: 'name_required' });
    expect(json(await post(Buffer.from('not a tar at all'), '?name=garbage'))).toMatchObject({ status: 400, code: 'invalid_build_context' });
    const noDockerfile = execFileSync('tar', ['-C', dir, '-c', 'hello.txt']);
    expect(json(await post(noDockerfile, '?name=no-dockerfile'))).toMatchObject({ status: 400, code: 'invalid_build_context' });
    expect(json(await post(Buffer.alloc(2 * 1024 * 1024), '?name=too-big'))).toMatchObject({ status: 413, code: 'payload_too_large' });
    expect(json(await post(tarball, '?name=from-tar'))).toMatchObject({ status: 409, code: 'image_exists' });
    expect((await post(tarball, '?name=Bad Name')).statusCode).toBe(400);
    // A path in a body of another type is only text: nothing is read or removed.
    const bystander = path.join(t.dataDir, 'bystander.tar');
    fs.writeFileSync(bystander, tarball);
    const asText = await t.app.inject({ method: 'POST', url: '/v1/images?name=as-text', headers: { ...admin.auth, 'content-type': 'text/plain' }, payload: bystander });
    expect(json(asText)).toMatchObject({ status: 415 });
    expect(fs.existsSync(bystander)).toBe(true);
    // Nobody but an admin uploads anything, and no refused upload stays on disk.
    expect((await t.app.inject({ method: 'POST', url: '/v1/images?name=anon', headers: { 'content-type': 'application/x-tar' }, payload: tarball })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'POST', url: '/v1/images?name=user', headers: { ...user.auth, 'content-type': 'application/x-tar' }, payload: tarball })).statusCode).toBe(403);
    expect(fs.readdirSync(os.tmpdir()).filter((f) => /^berth-context-.*\.tar$/.test(f))).toEqual([]);
    // None of the refused uploads left an image behind.
    const names = json(await t.app.inject({ method: 'GET', url: '/v1/images', headers: admin.auth })).items.map((i: { name: string }) => i.name);
    expect(names.filter((n: string) => ['garbage', 'no-dockerfile', 'too-big'].includes(n))).toEqual([]);
  });

  it('refuses a taken name (409), a bad name (400), and non-admins (403)', async () => {
    expect(json(await create('devbox', `FROM ${BASE_IMAGE}\n`))).toMatchObject({ status: 409, code: 'image_exists' });
    expect((await create('Bad Name', `FROM ${BASE_IMAGE}\n`)).statusCode).toBe(400);
    expect((await create('mine', `FROM ${BASE_IMAGE}\n`, user)).statusCode).toBe(403);
  });

  it('lists images and deletes one (409 while it builds)', async () => {
    const list = json(await t.app.inject({ method: 'GET', url: '/v1/images?status=ready', headers: user.auth }));
    expect(list.items.map((i: { name: string }) => i.name)).toEqual(['devbox', 'from-tar', 'slow']);
    const building = json(await create('short-lived', `FROM ${BASE_IMAGE}\nRUN sleep 2\n`));
    expect(json(await t.app.inject({ method: 'DELETE', url: `/v1/images/${building.id}`, headers: admin.auth }))).toMatchObject({ status: 409, code: 'image_building' });
    await settled(building.id);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/images/${building.id}`, headers: admin.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: `/v1/images/${building.id}`, headers: admin.auth })).statusCode).toBe(404);
  });

  it('shares the base of an image whose engine image it converted already, and deleting either keeps the other', async () => {
    const devbox = json(await t.app.inject({ method: 'GET', url: '/v1/images?status=ready', headers: admin.auth })).items.find((i: { name: string }) => i.name === 'devbox');
    const again = await settled(json(await create('devbox-again', `FROM ${BASE_IMAGE}\nRUN echo hello-from-the-build > /etc/motd\nENV GREETING=hi\nWORKDIR /root\n`)).id);
    expect(again).toMatchObject({ status: 'ready', size_bytes: devbox.size_bytes, config: devbox.config });
    const log = (await t.app.inject({ method: 'GET', url: `/v1/images/${again.id}/log`, headers: admin.auth })).body;
    expect(log).toMatch(/berth: the engine image is that of devbox, converted already: its base is shared, nothing exported/);
    expect(log).not.toMatch(/mounted the engine's layers|exported the filesystem/);
    const base = (id: string) => path.join(t.dataDir, 'images', id, 'base.ext4');
    expect(fs.statSync(base(again.id)).ino).toBe(fs.statSync(base(devbox.id)).ino);

    expect((await t.app.inject({ method: 'DELETE', url: `/v1/images/${devbox.id}`, headers: admin.auth })).statusCode).toBe(204);
    expect(fs.statSync(base(again.id)).size).toBe(Number(again.size_bytes));
    // The engine image is still there for the twin (only devbox's tag went).
    expect(execFileSync('docker', ['run', '--rm', '--network', 'none', dockerTag(again), 'cat', '/etc/motd']).toString()).toBe('hello-from-the-build\n');
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/images/${again.id}`, headers: admin.auth })).statusCode).toBe(204);
    expect(fs.existsSync(base(again.id))).toBe(false);
  });

  it('marks a build whose process died as failed, never leaving it building', async () => {
    const row = await t.prisma.image.create({ data: { name: 'orphan', heartbeatAt: new Date(Date.now() - 120_000) } });
    const { createImagesService } = await import('../../src/modules/images/service.js');
    const Docker = (await import('dockerode')).default;
    const service = createImagesService({ prisma: t.prisma, docker: () => new Docker(), dir: t.dataDir, events: t.app.events, log: console });
    expect(await service.failInterrupted()).toBe(1);
    const after = await t.prisma.image.findUniqueOrThrow({ where: { id: row.id } });
    expect(after).toMatchObject({ status: 'failed' });
    expect(after.error).toMatch(/interrupted/);
  });
});
