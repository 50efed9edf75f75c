// Machine credentials and account passwords never appear in logs, even at trace level,
// nor in any response after the one that created them.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, json, userSession, type TestApp } from '../helpers/app.js';
import { startMachine, type TestMachine } from '../helpers/ssh-machines.js';

const lines: string[] = [];
let t: TestApp;
let m: TestMachine;
beforeAll(async () => {
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  [t, m] = await Promise.all([createTestApp({ LOG_LEVEL: 'trace' }, { logStream: stream }), startMachine('secret-box')]);
});
afterAll(async () => {
  await t.close();
  await m.stop();
});

describe('secrets', () => {
  it('stay out of logs and later responses', async () => {
    const admin = await adminSession(t);
    const alice = await userSession(t, 'alice');
    const created = await t.app.inject({
      method: 'POST', url: '/v1/machines', headers: admin.auth,
      payload: { name: 'secret-box', host: m.host, port: m.port, username: 'root', password: m.rootPassword },
    });
    expect(created.statusCode).toBe(201);
    const res = await t.app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload: { count: 1, password: 'alices own passphrase' } });
    expect(res.statusCode).toBe(201);
    const gen = await t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: admin.auth });
    expect(json(gen).released).toBe(1);
    const generated = json(await t.app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload: { count: 1 } })).account.password;
    expect(generated).toBeTruthy();

    const everything = [
      lines.join(''),
      (await t.app.inject({ method: 'GET', url: '/v1/machines', headers: admin.auth })).body,
      (await t.app.inject({ method: 'GET', url: '/v1/reservations?all=true', headers: admin.auth })).body,
    ].join('\n');
    expect(lines.length).toBeGreaterThan(10);
    for (const secret of [m.rootPassword, 'alices own passphrase', generated]) expect(everything).not.toContain(secret);
  });
});
