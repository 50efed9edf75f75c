// Housekeeping: the job deletes what can no longer be used, a failing log follower ends
// its own stream, and deleting a user checks the last-admin rule before touching
// anything and leaves no reservation behind, not even one still being set up.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import Docker from 'dockerode';
import { createImagesService } from '../../src/modules/images/service.js';
import { PASSWORD, adminSession, createTestApp, json, login, register, userSession, type TestApp } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';
import type { TestMachine } from '../helpers/ssh-machines.js';

describe('sessions and refresh tokens', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ BERTH_REFRESH_REUSE_WINDOW_SECONDS: '2' });
  });
  afterAll(() => t.close());

  const rows = async (userId: string) => ({
    sessions: await t.prisma.session.count({ where: { userId } }),
    tokens: await t.prisma.refreshToken.count({ where: { session: { userId } } }),
  });

  it('keeps a spent token through the reuse window, then deletes it; dead sessions go whole', async () => {
    const { id: userId } = await register(t.app, 'rotor');
    let session = await login(t.app, 'rotor');
    let refresh = session.refreshToken;
    for (let i = 0; i < 300; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: refresh } });
      expect(res.statusCode).toBe(200);
      refresh = json(res).refresh_token;
    }
    expect(await rows(userId)).toEqual({ sessions: 1, tokens: 301 });
    // Within the window a spent token is still known: presented again, it revokes the session.
    await t.app.jobs.runNow('sessions');
    const other = await login(t.app, 'rotor');
    const spent = other.refreshToken;
    expect((await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: spent } })).statusCode).toBe(200);
    const reused = await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: spent } });
    expect(json(reused)).toMatchObject({ code: 'refresh_token_reused' });

    await new Promise((r) => setTimeout(r, 2100));
    await t.app.jobs.runNow('sessions');
    // The revoked second session is gone with its tokens; the first keeps only its live token.
    expect(await rows(userId)).toEqual({ sessions: 1, tokens: 1 });
    expect((await t.app.inject({ method: 'POST', url: '/v1/token/refresh', payload: { refresh_token: refresh } })).statusCode).toBe(200);

    // An expired session goes too.
    session = await login(t.app, 'rotor');
    await t.prisma.session.update({ where: { id: session.sessionId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    await t.app.jobs.runNow('sessions');
    expect(await t.prisma.session.findUnique({ where: { id: session.sessionId } })).toBeNull();
  });
});

describe('the build log follower', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('ends its stream with the error when the log cannot be read, and the process goes on', async () => {
    const image = await t.prisma.image.create({ data: { name: 'unreadable', heartbeatAt: new Date() } });
    const dir = path.join(t.dataDir, 'images');
    const images = createImagesService({ prisma: t.prisma, docker: () => new Docker(), dir, events: t.app.events, log: console });
    // Where the log should be is a directory: every read of it fails.
    fs.mkdirSync(path.join(dir, image.id, 'build.log'), { recursive: true });
    const stream = await images.logStream(image.id);
    await expect(
      (async () => {
        for await (const _ of stream);
      })(),
    ).rejects.toThrow(/EISDIR/);
  });
});

/** Where a held useradd waits: it goes on once this file exists, and marks `${GATE}.reached` when it starts waiting. */
const GATE = '/run/berth-test-useradd-gate';

async function holdUseraddAtGate(m: TestMachine): Promise<void> {
  const r = await m.sh(
    `rm -f ${GATE} ${GATE}.reached && mv /usr/sbin/useradd /usr/sbin/useradd.real && ` +
      `printf '#!/bin/sh\\ntouch ${GATE}.reached\\nwhile [ ! -e ${GATE} ]; do sleep 0.1; done\\nexec /usr/sbin/useradd.real "$@"\\n' > /usr/sbin/useradd && ` +
      'chmod +x /usr/sbin/useradd',
  );
  if (r.code !== 0) throw new Error(`could not hold useradd: ${r.out}`);
}

describe('deleting a user', () => {
  let pool: Pool;
  beforeAll(async () => {
    pool = await createPool(3, { BERTH_RESERVATION_LEASE_SECONDS: '2' }, 'del');
  });
  afterAll(() => pool.close());

  it('of two admins deleting each other at once, lets one through and leaves the other’s reservations alone', async () => {
    const a = await adminSession(pool.t, 'admin-a');
    const b = await adminSession(pool.t, 'admin-b');
    // The bootstrap admin of the pool is a third admin: disable it so these two are all there is.
    await pool.t.prisma.user.update({ where: { username: 'root-admin' }, data: { disabled: true } });
    const reserve = async (s: typeof a) => json(await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: s.auth, payload: { count: 1 } }));
    const [ra, rb] = [await reserve(a), await reserve(b)];
    const [delB, delA] = await Promise.all([
      pool.t.app.inject({ method: 'DELETE', url: `/v1/users/${b.userId}`, headers: a.auth }),
      pool.t.app.inject({ method: 'DELETE', url: `/v1/users/${a.userId}`, headers: b.auth }),
    ]);
    const codes = [delB.statusCode, delA.statusCode].sort();
    expect(codes[0]).toBe(204);
    expect([401, 409]).toContain(codes[1]); // refused by the rule, or the loser's own session already ended
    const [survivor, gone] = delB.statusCode === 204 ? [ra, rb] : [rb, ra];
    const status = async (id: string) => (await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id } })).status;
    expect(await status(survivor.id)).toBe('active');
    expect(await status(gone.id)).toBe('released');
    expect(await pool.t.prisma.user.count({ where: { role: 'admin', disabled: false } })).toBe(1);
    await pool.t.prisma.user.update({ where: { username: 'root-admin' }, data: { disabled: false } });
  });

  it('ends a reservation still being set up: it never becomes the deleted user’s', async () => {
    const carol = await userSession(pool.t, 'carol');
    const slow = pool.machines[2]!;
    // useradd on that machine waits at a gate the test opens: the user is deleted while the
    // account is being made, however slow the machine running the test is.
    await holdUseraddAtGate(slow);
    const pending = pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: carol.auth, payload: { machines: [slow.name] } });
    await vi.waitFor(
      async () => {
        if ((await slow.sh(`test -e ${GATE}.reached`)).code !== 0) throw new Error('useradd has not reached the gate yet');
      },
      { timeout: 120_000, interval: 200 },
    );
    expect(await pool.t.prisma.reservation.count({ where: { userId: carol.userId, status: 'provisioning' } })).toBe(1);
    const del = await pool.t.app.inject({ method: 'DELETE', url: `/v1/users/${carol.userId}`, headers: pool.admin.auth });
    expect(del.statusCode).toBe(204);
    await slow.sh(`touch ${GATE}`);
    const res = await pending;
    // The account was made for nobody: the request fails as a provisioning failure, undone.
    expect(res.statusCode).toBe(502);
    expect(json(res)).toMatchObject({ status: 502, code: 'provisioning_failed', machine: slow.name });
    await pool.t.app.reservationJob.tick();
    expect(await pool.t.prisma.reservation.count({ where: { status: { in: ['provisioning', 'active', 'releasing'] } , userId: null } })).toBe(0);
    expect(await accountExists(slow, 'carol')).toBe(false);
    expect((await pool.t.prisma.machine.findUniqueOrThrow({ where: { name: slow.name } })).status).toBe('available');
    // The name is free again.
    await register(pool.t.app, 'carol', PASSWORD);
  });
});
