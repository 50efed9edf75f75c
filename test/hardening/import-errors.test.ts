// An import entry refused for a known reason (a host key that is not one, a name that is a
// VM's) is reported with that reason and its code, not as "an internal error", and is not
// logged as one: the audit found every such entry reported and logged as berth's failure.
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, json, type Session, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: Session;
const logged: string[] = [];
beforeAll(async () => {
  const logStream = new PassThrough();
  logStream.on('data', (line: Buffer) => logged.push(line.toString()));
  t = await createTestApp({ LOG_LEVEL: 'error' }, { logStream });
  admin = await adminSession(t);
});
afterAll(() => t.close());

describe('an import with entries refused for a known reason', () => {
  it('reports each with its code and message, saves the good ones, and logs no internal error', async () => {
    // A machine record a VM owns: imports may not change it.
    const vmMachine = await t.prisma.machine.create({
      data: { name: 'vm-owned', host: '127.0.0.1', port: 40001, username: 'root', credentialKind: 'password', credential: Buffer.from('x'), tags: {} },
    });
    const image = await t.prisma.image.create({ data: { name: 'img', status: 'failed', error: 'test record' } });
    await t.prisma.vm.create({
      data: {
        name: 'vm-owned', imageId: image.id, machineId: vmMachine.id, state: 'stopped', node: t.config.nodeName, cpus: 1, memoryMb: 256,
        sshPort: 40001, hostKeyFingerprint: 'SHA256:x', hostKeyPublic: 'ssh-ed25519 AAAA', hostKeySealed: Buffer.from('x'), rootKeyPublic: 'ssh-ed25519 AAAA',
      },
    });
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/machines/import',
      headers: admin.auth,
      payload: {
        machines: [
          { name: 'good', host: '10.0.0.1', user: 'root', password: 'pw' },
          { name: 'bad-key', host: '10.0.0.2', user: 'root', password: 'pw', host_key: 'not a host key' },
          { name: 'vm-owned', host: '10.0.0.3', user: 'root', password: 'pw' },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    expect(body).toMatchObject({ created: 1, updated: 0 });
    expect(body.errors).toEqual([
      { index: 1, name: 'bad-key', pointer: '/machines/1', code: 'invalid_host_key', message: expect.stringMatching(/host_key must be an OpenSSH public key line/) },
      { index: 2, name: 'vm-owned', pointer: '/machines/2', code: 'machine_is_vm', message: expect.stringMatching(/is a VM berth runs/) },
    ]);
    expect(JSON.stringify(body)).not.toMatch(/internal error/);
    expect(logged.join('')).not.toMatch(/importing a machine failed/);
    // The VM's record is untouched.
    expect((await t.prisma.machine.findUniqueOrThrow({ where: { name: 'vm-owned' } })).host).toBe('127.0.0.1');
  });
});
