import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHostKey } from '../../src/infra/ssh.js';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { rootKey, startMachines, type TestMachine } from '../helpers/ssh-machines.js';

let t: TestApp;
let admin: Session;
let user: Session;
let m: TestMachine[];

beforeAll(async () => {
  [t, m] = await Promise.all([createTestApp(), startMachines(3, 'reg')]);
  admin = await adminSession(t);
  user = await userSession(t, 'alice');
});
afterAll(async () => {
  await Promise.all(m.map((x) => x.stop()));
  await t.close();
});

const post = (url: string, payload: unknown, s = admin) => t.app.inject({ method: 'POST', url, headers: s.auth, payload: payload as object });
const get = (url: string, s = admin) => t.app.inject({ method: 'GET', url, headers: s.auth });

describe('registering machines', () => {
  it('keeps the credential sealed and never returns it', async () => {
    const res = await post('/v1/machines', { name: 'key-box', host: m[0]!.host, port: m[0]!.port, username: 'root', private_key: rootKey.private, tags: { gpu: 'a100' } });
    expect(res.statusCode).toBe(201);
    expect(json(res)).toMatchObject({ name: 'key-box', status: 'available', type: 'server', tags: { gpu: 'a100' }, host_key_fingerprint: null });
    expect(res.body).not.toContain('PRIVATE KEY');
    const row = await t.prisma.machine.findUniqueOrThrow({ where: { name: 'key-box' } });
    const stored = Buffer.from(row.credential).toString('latin1');
    expect(stored).not.toContain('PRIVATE KEY');
    expect(stored).not.toContain(rootKey.private.slice(40, 80));
    expect(row.credential.length).toBeGreaterThan(rootKey.private.length); // IV + tag + ciphertext
  });

  it('rejects bad input with 400 and a taken name with 409', async () => {
    const base = { name: 'bad', host: '127.0.0.1', username: 'root' };
    expect(json(await post('/v1/machines', base)).errors[0].pointer).toBe('/password'); // no credential
    expect((await post('/v1/machines', { ...base, password: 'x', private_key: 'y' })).statusCode).toBe(400);
    expect((await post('/v1/machines', { ...base, password: 'x', port: 70000 })).statusCode).toBe(400);
    expect((await post('/v1/machines', { ...base, password: 'x', name: '../etc' })).statusCode).toBe(400);
    expect(json(await post('/v1/machines', { ...base, password: 'x', host_key: 'not a key' }))).toMatchObject({ status: 400, code: 'invalid_host_key' });
    const dup = await post('/v1/machines', { name: 'key-box', host: '127.0.0.1', username: 'root', password: 'x' });
    expect(json(dup)).toMatchObject({ status: 409, code: 'machine_exists' });
  });
});

describe('POST /v1/machines/{name}/check', () => {
  it('records the host key on first contact, then keeps it pinned', async () => {
    const res = await post('/v1/machines/key-box/check', {});
    expect(json(res)).toMatchObject({ reachable: true, status: 'available', host_key_fingerprint: parseHostKey(m[0]!.hostKey) });
    expect(json(res).latency_ms).toBeGreaterThan(0);
    const machine = json(await get('/v1/machines/key-box'));
    expect(machine.host_key_fingerprint).toBe(parseHostKey(m[0]!.hostKey));
    expect(machine.last_checked_at).not.toBeNull();
  });

  it('logs in with a password, and with a host key given at registration; then with its own key', async () => {
    await post('/v1/machines', { name: 'pw-box', host: m[1]!.host, port: m[1]!.port, username: 'root', password: m[1]!.rootPassword, host_key: m[1]!.hostKey });
    expect(json(await post('/v1/machines/pw-box/check', {}))).toMatchObject({ reachable: true, host_key_fingerprint: parseHostKey(m[1]!.hostKey) });
    expect((await t.prisma.machine.findUniqueOrThrow({ where: { name: 'pw-box' } })).credentialKind).toBe('private_key');
    expect((await m[1]!.sh('grep -c berth-login-key /root/.ssh/authorized_keys')).out.trim()).toBe('1');
  });

  it('takes a machine whose host key changed offline with a clear reason, until an admin re-pins it', async () => {
    await m[0]!.replace(); // same address and port, new host key
    const res = json(await post('/v1/machines/key-box/check', {}));
    expect(res).toMatchObject({ reachable: false, status: 'offline' });
    expect(res.error).toMatch(/host key changed/);
    const machine = json(await get('/v1/machines/key-box'));
    expect(machine.status).toBe('offline');
    expect(machine.status_reason).toMatch(/host key changed: pinned SHA256:.+ server showed SHA256:/);

    // Checking again does not trust the new key.
    expect(json(await post('/v1/machines/key-box/check', {})).status).toBe('offline');
    // The admin pins the new key: the machine returns to the pool.
    await t.app.inject({ method: 'PATCH', url: '/v1/machines/key-box', headers: admin.auth, payload: { host_key: m[0]!.hostKey } });
    expect(json(await post('/v1/machines/key-box/check', {}))).toMatchObject({ reachable: true, status: 'available' });
  });

  it('reports an unreachable machine and takes it offline', async () => {
    await post('/v1/machines', { name: 'dead-box', host: '127.0.0.1', port: 1, username: 'root', password: 'whatever' });
    const res = json(await post('/v1/machines/dead-box/check', {}));
    expect(res).toMatchObject({ reachable: false, status: 'offline', latency_ms: null });
  });
});

describe('maintenance, listing and pool statistics', () => {
  it('enters and leaves maintenance', async () => {
    const enter = await t.app.inject({ method: 'PUT', url: '/v1/machines/pw-box/maintenance', headers: admin.auth, payload: { reason: 'new disk' } });
    expect(json(enter)).toMatchObject({ status: 'maintenance', status_reason: 'new disk' });
    const leave = await t.app.inject({ method: 'DELETE', url: '/v1/machines/pw-box/maintenance', headers: admin.auth });
    expect(json(leave)).toMatchObject({ status: 'available', status_reason: null });
    const again = await t.app.inject({ method: 'DELETE', url: '/v1/machines/pw-box/maintenance', headers: admin.auth });
    expect(json(again)).toMatchObject({ status: 409, code: 'not_in_maintenance' });
  });

  it('filters by status, type and tags, and counts the pool by status and type', async () => {
    await post('/v1/machines', { name: 'gpu-b', host: '127.0.0.1', port: 2, username: 'root', password: 'x', type: 'gpu', tags: { gpu: 'h100', rack: 'r2' } });
    await post('/v1/machines', { name: 'gpu-c', host: '127.0.0.1', port: 3, username: 'root', password: 'x', type: 'gpu', tags: { gpu: 'a100', rack: 'r2' } });
    await t.app.inject({ method: 'PUT', url: '/v1/machines/gpu-c/maintenance', headers: admin.auth, payload: { reason: 'fan' } });
    const names = async (qs: string) => json(await get(`/v1/machines?${qs}`, user)).items.map((x: { name: string }) => x.name);
    expect(await names('type=gpu')).toEqual(['gpu-b', 'gpu-c']);
    expect(await names('tag=rack:r2&tag=gpu:a100')).toEqual(['gpu-c']);
    expect(await names('tag=gpu:a100')).toEqual(['gpu-c', 'key-box']);
    expect(await names('status=maintenance')).toEqual(['gpu-c']);
    expect(await names('status=offline')).toEqual(['dead-box']);
    const page1 = json(await get('/v1/machines?limit=2', user));
    expect(page1.items).toHaveLength(2);
    const page2 = json(await get(`/v1/machines?limit=2&cursor=${page1.next_cursor}`, user));
    expect(page2.items[0].name > page1.items[1].name).toBe(true);
    expect((await get('/v1/machines?tag=nocolon', user)).statusCode).toBe(400);
    expect((await get('/v1/machines?status=broken', user)).statusCode).toBe(400);

    const pool = json(await get('/v1/pool', user));
    expect(pool).toEqual({
      total: 5,
      available: 3,
      reserved: 0,
      maintenance: 1,
      offline: 1,
      needs_reprovision: 0,
      by_type: {
        server: { total: 3, available: 2, reserved: 0, maintenance: 0, offline: 1, needs_reprovision: 0 },
        gpu: { total: 2, available: 1, reserved: 0, maintenance: 1, offline: 0, needs_reprovision: 0 },
      },
    });
  });

  it('answers 404 for an unknown machine', async () => {
    expect(json(await get('/v1/machines/nope', user))).toMatchObject({ status: 404, code: 'machine_not_found' });
  });
});

describe('POST /v1/machines/import', () => {
  const yaml = (port: number, pw: string) => `machines:
  - name: alpine-1
    host: 127.0.0.1
    port: ${port}
    user: root
    password: ${pw}
  - name: alpine-2
    host: 127.0.0.1
    port: 2222
    user: root
    password: test
`;

  it('imports the machine-manager YAML format, and updates on re-import', async () => {
    const res = await t.app.inject({
      method: 'POST', url: '/v1/machines/import', headers: { ...admin.auth, 'content-type': 'application/yaml' }, payload: yaml(m[2]!.port, m[2]!.rootPassword),
    });
    expect(json(res)).toEqual({ created: 2, updated: 0, errors: [] });
    expect(json(await post('/v1/machines/alpine-1/check', {})).reachable).toBe(true);
    const again = await t.app.inject({
      method: 'POST', url: '/v1/machines/import', headers: { ...admin.auth, 'content-type': 'application/yaml' }, payload: yaml(m[2]!.port, m[2]!.rootPassword),
    });
    expect(json(again)).toEqual({ created: 0, updated: 2, errors: [] });
  });

  it('imports JSON, saving good entries and reporting bad ones by index', async () => {
    const res = await post('/v1/machines/import', {
      machines: [
        { name: 'json-1', host: '127.0.0.1', port: 2301, user: 'root', password: 'pw' },
        { name: 'json-2', host: '127.0.0.1', port: 'not-a-port', user: 'root', password: 'pw' },
        'not an object',
      ],
    });
    const body = json(res);
    expect(body.created).toBe(1);
    expect(body.errors.map((e: { index: number }) => e.index)).toEqual([1, 2]);
    expect(body.errors[0]).toMatchObject({ name: 'json-2', pointer: '/machines/1/port' });
  });

  it('answers malformed YAML with 400', async () => {
    const res = await t.app.inject({
      method: 'POST', url: '/v1/machines/import', headers: { ...admin.auth, 'content-type': 'application/yaml' }, payload: 'machines: [unclosed',
    });
    expect(json(res)).toMatchObject({ status: 400, code: 'invalid_yaml' });
    const shape = await t.app.inject({
      method: 'POST', url: '/v1/machines/import', headers: { ...admin.auth, 'content-type': 'application/yaml' }, payload: 'just a string',
    });
    expect(shape.statusCode).toBe(400);
  });
});

describe('PATCH and DELETE', () => {
  it('changes fields, forgets a pinned key with null, and deletes an unreserved machine', async () => {
    const res = await t.app.inject({ method: 'PATCH', url: '/v1/machines/pw-box', headers: admin.auth, payload: { tags: { zone: 'b' }, host_key: null, allow_sudo: true } });
    expect(json(res)).toMatchObject({ tags: { zone: 'b' }, host_key_fingerprint: null, allow_sudo: true, warning: expect.stringMatching(/root/) });
    expect((await t.app.inject({ method: 'PATCH', url: '/v1/machines/pw-box', headers: admin.auth, payload: {} })).statusCode).toBe(400);
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/machines/json-1', headers: admin.auth })).statusCode).toBe(204);
    expect((await t.app.inject({ method: 'DELETE', url: '/v1/machines/json-1', headers: admin.auth })).statusCode).toBe(404);
  });
});
