// Every machine of a reservation answer carries its pinned host key, and the answer a
// known_hosts text: plain OpenSSH logs in with StrictHostKeyChecking=yes and no prompt.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair, parseHostKey } from '../../src/infra/ssh.js';
import { json, userSession, type Session } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';

const run = promisify(execFile);
let pool: Pool;
let alice: Session;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-known-hosts-'));

beforeAll(async () => {
  pool = await createPool(2, {}, 'kh');
  alice = await userSession(pool.t, 'alice');
});
afterAll(async () => {
  await pool.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** OpenSSH itself, as a user would run it: strict checking, only the known_hosts berth gave. */
function openssh(keyFile: string, knownHosts: string, m: { host: string; port: number }, command: string) {
  return run('ssh', [
    '-i', keyFile, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10',
    '-p', String(m.port), `alice@${m.host}`, command,
  ]);
}

describe('host keys in reservation answers', () => {
  it('gives each machine its key line and a known_hosts OpenSSH trusts, also for a machine pinned by fingerprint only', async () => {
    const [byLine, byFingerprint] = pool.machines as [(typeof pool.machines)[0], (typeof pool.machines)[0]];
    // The second machine is known only by its fingerprint: berth learns its key line on first contact.
    await pool.t.prisma.machine.update({ where: { name: byFingerprint.name }, data: { hostKey: null, hostKeyFingerprint: parseHostKey(byFingerprint.hostKey) } });
    const before = json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${byFingerprint.name}`, headers: alice.auth }));
    expect(before.host_key).toBeNull();

    const key = generateSshKeyPair('alice@laptop');
    const keyFile = path.join(dir, 'id_ed25519');
    fs.writeFileSync(keyFile, key.private, { mode: 0o600 });
    const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload: { count: 2, ssh_public_key: key.public } });
    expect(res.statusCode, res.body).toBe(201);
    const r = json(res);
    for (const m of [byLine, byFingerprint]) {
      const entry = r.machines.find((x: { name: string }) => x.name === m.name);
      expect(entry.host_key).toBe(m.hostKey.split(' ').slice(0, 2).join(' '));
      expect(r.known_hosts).toContain(`[${m.host}]:${m.port} ${entry.host_key}\n`);
    }
    const knownHosts = path.join(dir, 'known_hosts');
    fs.writeFileSync(knownHosts, r.known_hosts);
    for (const m of [byLine, byFingerprint]) expect((await openssh(keyFile, knownHosts, m, 'id -un')).stdout.trim()).toBe('alice');

    // A machine that shows another key is refused by OpenSSH too: nothing is trusted on first use.
    await byLine.replace();
    await expect(openssh(keyFile, knownHosts, byLine, 'true')).rejects.toThrow(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
    await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${r.id}`, headers: alice.auth });
  });
});
