// What the images module raises, heard as a subscriber hears it (app.events): each change
// of an image's status once it is committed — a build started, ready (saying whose base it
// shares), failed, deleted — and one failure per build whose process died.
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../../src/events/bus.js';
import { createImagesService } from '../../src/modules/images/service.js';
import { adminSession, createTestApp, json, type Session, type TestApp } from '../helpers/app.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

let t: TestApp;
let admin: Session;
const heard: DomainEvent<'image.changed'>[] = [];

beforeAll(async () => {
  // No VM template is made of these images; the image watch ticks only when asked.
  t = await createTestApp({ BERTH_VM_SNAPSHOTS: 'off', BERTH_IMAGE_WATCH_SECONDS: '3600' });
  admin = await adminSession(t);
  t.app.events.onAny((event) => {
    if (event.type === 'image.changed') heard.push(event);
  });
});
afterAll(() => t.close());

const changesOf = (imageId: string) => heard.filter((e) => e.imageId === imageId).map(({ name, status, sharesBaseWith }) => ({ name, status, sharesBaseWith }));

async function build(name: string, dockerfile: string): Promise<string> {
  const res = await t.app.inject({ method: 'POST', url: '/v1/images', headers: admin.auth, payload: { name, dockerfile } });
  expect(res.statusCode, res.body).toBe(202);
  const { id } = json<{ id: string }>(res);
  const deadline = Date.now() + 120_000;
  // Raised once the status is committed, so it may come a moment after the status reads as settled.
  while (!heard.some((e) => e.imageId === id && e.status !== 'building')) {
    if (Date.now() > deadline) throw new Error(`no end of the build of ${name} was raised; heard: ${JSON.stringify(changesOf(id))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return id;
}

describe('image events', () => {
  const dockerfile = `FROM ${BASE_IMAGE}\nRUN echo image-events > /etc/motd\n`;

  it('raises building, then ready, for a build that succeeds; its twin says whose base it shares', async () => {
    const id = await build('evented', dockerfile);
    expect(changesOf(id)).toEqual([
      { name: 'evented', status: 'building', sharesBaseWith: null },
      { name: 'evented', status: 'ready', sharesBaseWith: null },
    ]);
    // The same Dockerfile again: the engine answers with the same image, whose base is linked.
    const twin = await build('evented-twin', dockerfile);
    expect(changesOf(twin)).toEqual([
      { name: 'evented-twin', status: 'building', sharesBaseWith: null },
      { name: 'evented-twin', status: 'ready', sharesBaseWith: id },
    ]);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/images/${twin}`, headers: admin.auth })).statusCode).toBe(204);
    expect(changesOf(twin).at(-1)).toEqual({ name: 'evented-twin', status: 'deleted', sharesBaseWith: null });
  }, 180_000);

  it('raises building, then failed, for a build that fails', async () => {
    const id = await build('evented-broken', `FROM ${BASE_IMAGE}\nRUN exit 7\n`);
    expect(changesOf(id)).toEqual([
      { name: 'evented-broken', status: 'building', sharesBaseWith: null },
      { name: 'evented-broken', status: 'failed', sharesBaseWith: null },
    ]);
  }, 180_000);

  it('raises one failure per build whose process died, once', async () => {
    // The tick of start-up is over: the next one sees these rows.
    await t.app.jobs.runNow('images');
    const stale = new Date(Date.now() - 120_000);
    const orphans = await Promise.all(['orphan-a', 'orphan-b'].map((name) => t.prisma.image.create({ data: { name, heartbeatAt: stale } })));
    expect(await t.app.jobs.runNow('images')).toBe(2);
    for (const orphan of orphans) expect(changesOf(orphan.id)).toEqual([{ name: orphan.name, status: 'failed', sharesBaseWith: null }]);
    // Failed already: another process that looks raises nothing more.
    const other = createImagesService({ prisma: t.prisma, docker: () => new Docker(), dir: path.join(t.dataDir, 'images'), events: t.app.events, log: console });
    expect(await other.failInterrupted()).toBe(0);
    for (const orphan of orphans) expect(changesOf(orphan.id)).toHaveLength(1);
  });
});
