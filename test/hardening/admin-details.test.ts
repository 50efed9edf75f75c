// What only admins read. The audit found, as a plain user: an image's build log, its
// environment (`config.env`) and why its build failed; a failed reservation's reason in the
// machine's own words (`useradd: group plugdev exists`); and every machine's login user
// (`root`). Users now read names, states, sizes, timings and which machine failed; admins
// read the rest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { json, userSession, type Session } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';

let pool: Pool;
let bob: Session;
beforeAll(async () => {
  pool = await createPool(1, {}, 'details');
  bob = await userSession(pool.t, 'bob');
});
afterAll(() => pool.close());

const get = (url: string, s: Session) => pool.t.app.inject({ method: 'GET', url, headers: s.auth });

describe('images', () => {
  it('show users name, status, sizes and timings; the log, the configuration and why a build failed are for admins', async () => {
    const secret = 'API_TOKEN=s3cr3t-from-the-build';
    const ready = await pool.t.prisma.image.create({
      data: {
        name: 'ready-one', status: 'ready', sizeBytes: BigInt(1 << 28), buildMs: 400, convertMs: 4000,
        config: { entrypoint: null, cmd: ['/bin/bash'], env: [secret], user: null, workdir: null },
      },
    });
    const failed = await pool.t.prisma.image.create({ data: { name: 'failed-one', status: 'failed', error: 'ADD failed: http://10.1.2.3:8500/v1/kv/secret: 403' } });
    const logDir = path.join(pool.t.dataDir, 'images', failed.id);
    fs.mkdirSync(logDir, { recursive: true });
    fs.writeFileSync(path.join(logDir, 'build.log'), `Step 2/2 : RUN echo ${secret}\n`);

    for (const url of [`/v1/images/${ready.id}`, `/v1/images/${failed.id}`, '/v1/images']) {
      const res = await get(url, bob);
      expect(res.statusCode).toBe(200);
      expect(res.body).not.toContain('s3cr3t');
      expect(res.body).not.toContain('10.1.2.3');
    }
    const seenReady = json(await get(`/v1/images/${ready.id}`, bob));
    expect(seenReady).toMatchObject({ name: 'ready-one', status: 'ready', size_bytes: 1 << 28, build_ms: 400, convert_ms: 4000, error: null });
    expect(seenReady).not.toHaveProperty('config');
    expect(json(await get(`/v1/images/${failed.id}`, bob))).toMatchObject({ status: 'failed', error: 'the build failed (an admin can read why)' });
    const log = await get(`/v1/images/${failed.id}/log`, bob);
    expect(json(log)).toMatchObject({ status: 403, code: 'admin_required' });

    expect(json(await get(`/v1/images/${ready.id}`, pool.admin)).config.env).toEqual([secret]);
    expect(json(await get(`/v1/images/${failed.id}`, pool.admin)).error).toContain('10.1.2.3');
    expect((await get(`/v1/images/${failed.id}/log`, pool.admin)).body).toContain(secret);
  });
});

describe('machines', () => {
  it("show users no login user; admins see it", async () => {
    const name = pool.machines[0]!.name;
    for (const url of [`/v1/machines/${name}`, '/v1/machines']) {
      const seen = json(await get(url, bob));
      const m = seen.items ? seen.items[0] : seen;
      expect(m.name).toBe(name);
      expect(m).not.toHaveProperty('username');
    }
    expect(json(await get(`/v1/machines/${name}`, pool.admin)).username).toBe('root');
  });
});

describe('a reservation that failed on the machine', () => {
  it("tells its user which machine failed, not the machine's own words; admins read them", async () => {
    const m = pool.machines[0]!;
    // As the audit found it: a group of the account's name makes useradd refuse.
    await m.sh('groupadd plugdev-bob');
    try {
      const create = () =>
        pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: { ...bob.auth, 'idempotency-key': 'fails' }, payload: { count: 1, username: 'plugdev-bob' } });
      const first = await create();
      expect(first.statusCode).toBe(502);
      const problem = json(first);
      expect(problem).toMatchObject({ code: 'provisioning_failed', machine: m.name, detail: `could not set up the account on ${m.name}; everything was undone (an admin can read why)` });
      const replayed = json(await create());
      expect(replayed).toMatchObject({ code: 'provisioning_failed', detail: problem.detail });

      const id = problem.reservation_id as string;
      const asUser = [json(await get(`/v1/reservations/${id}`, bob)), json(await get('/v1/reservations?status=failed', bob)).items[0]];
      for (const r of asUser) expect(r).toMatchObject({ id, status: 'failed', failure_reason: problem.detail });
      for (const text of [first.body, JSON.stringify(replayed), JSON.stringify(asUser)]) expect(text).not.toMatch(/useradd|group/);

      const asAdmin = json(await get(`/v1/reservations/${id}`, pool.admin));
      expect(asAdmin.failure_reason).toMatch(/^could not set up the account on .*: .*useradd: group plugdev-bob exists/);
      expect(await accountExists(m, 'plugdev-bob')).toBe(false);
    } finally {
      await m.sh('groupdel plugdev-bob');
    }
  });
});
