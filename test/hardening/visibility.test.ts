// Tenants see only what is theirs: why a machine is out of the pool can name another
// user's account and reservation, and why a VM failed can quote the last tenant's console.
// Users who are not admins get a neutral word; admins get the details.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: Session;
let bob: Session;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t);
  bob = await userSession(t, 'bob');
});
afterAll(() => t.close());

describe('reasons', () => {
  it('of a machine: neutral for users, complete for admins, and reservation ids for admins only', async () => {
    const reservationId = randomUUID();
    const secretReason = `cleanup pending: account alice of reservation ${reservationId}: the connection failed`;
    await t.prisma.machine.create({
      data: {
        name: 'held', host: '127.0.0.1', port: 1, username: 'root', credentialKind: 'password', credential: Buffer.from('x'),
        tags: {}, status: 'offline', statusReason: secretReason, reservationId,
      },
    });
    await t.prisma.machine.create({
      data: {
        name: 'rekeyed', host: '127.0.0.1', port: 2, username: 'root', credentialKind: 'password', credential: Buffer.from('x'),
        tags: {}, status: 'offline', statusReason: 'host key changed: pinned SHA256:a server showed SHA256:b',
      },
    });
    for (const url of ['/v1/machines/held', '/v1/machines?status=offline']) {
      const seen = json(await t.app.inject({ method: 'GET', url, headers: bob.auth }));
      const held = seen.items ? seen.items.find((m: { name: string }) => m.name === 'held') : seen;
      expect(held).toMatchObject({ status: 'offline', status_reason: 'cleanup pending', reservation_id: null });
      expect(JSON.stringify(seen)).not.toContain(reservationId);
      expect(JSON.stringify(seen)).not.toContain('alice');
    }
    expect(json(await t.app.inject({ method: 'GET', url: '/v1/machines/rekeyed', headers: bob.auth })).status_reason).toBe('unreachable');
    const asAdmin = json(await t.app.inject({ method: 'GET', url: '/v1/machines/held', headers: admin.auth }));
    expect(asAdmin).toMatchObject({ status_reason: secretReason, reservation_id: reservationId });
  });

  it('of a VM: its state for users, the console lines for admins', async () => {
    const image = await t.prisma.image.create({ data: { name: 'img', status: 'failed', error: 'test record' } });
    const reason = 'QEMU exited (console: alice was here | cat /home/alice/secret)';
    const vm = await t.prisma.vm.create({
      data: {
        name: 'vm1', imageId: image.id, state: 'failed', stateReason: reason, node: t.config.nodeName, cpus: 1, memoryMb: 512,
        sshPort: 40999, hostKeyFingerprint: 'SHA256:x', hostKeyPublic: 'ssh-ed25519 AAAA', hostKeySealed: Buffer.from('x'), rootKeyPublic: 'ssh-ed25519 AAAA',
      },
    });
    for (const url of [`/v1/vms/${vm.id}`, '/v1/vms']) {
      const seen = json(await t.app.inject({ method: 'GET', url, headers: bob.auth }));
      expect(JSON.stringify(seen)).not.toContain('alice');
      expect((seen.items?.[0] ?? seen).state_reason).toBe('failed');
    }
    expect(json(await t.app.inject({ method: 'GET', url: `/v1/vms/${vm.id}`, headers: admin.auth })).state_reason).toBe(reason);
  });
});
