// The SSH adapter must survive machines dying under it: a socket error after the
// connection is up (node-ssh no longer listens for them then) must fail the command,
// not crash the process. vitest fails the run on any uncaught error.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair, HostKeyMismatchError, parseHostKey, sshConnect, SshError, sshProveHostKey } from '../../src/infra/ssh.js';
import { freePort, rootKey, startMachine, type TestMachine } from '../helpers/ssh-machines.js';

let m: TestMachine;
beforeAll(async () => {
  m = await startMachine('vanish');
});
afterAll(() => m.stop());

/** A TCP proxy to the machine whose connections can be reset (RST), as a dying host or VM does. */
async function resettableProxy(target: number) {
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    client.on('error', () => {});
    upstream.on('error', () => {});
    sockets.push(client, upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    reset: () => sockets.forEach((s) => s.resetAndDestroy()),
    close: () => server.close(),
  };
}

describe('sshProveHostKey (what a VM must answer to be running)', () => {
  it('ends after the key exchange when the server signs with the pinned key, and refuses any other key', async () => {
    await sshProveHostKey({ host: m.host, port: m.port, hostKeyFingerprint: parseHostKey(m.hostKey)! }, 5000);
    const other = parseHostKey(generateSshKeyPair().public)!;
    await expect(sshProveHostKey({ host: m.host, port: m.port, hostKeyFingerprint: other }, 5000)).rejects.toBeInstanceOf(HostKeyMismatchError);
    await expect(sshProveHostKey({ host: '127.0.0.1', port: await freePort(), hostKeyFingerprint: other }, 2000)).rejects.toBeInstanceOf(SshError);
  });
});

describe('sshConnect', () => {
  it('survives a connection reset while the session is idle, and fails the next command', async () => {
    const proxy = await resettableProxy(m.port);
    try {
      const ssh = await sshConnect(
        { host: '127.0.0.1', port: proxy.port, username: 'root', privateKey: rootKey.private, hostKeyFingerprint: parseHostKey(m.hostKey) },
        { connectTimeoutMs: 3000, commandTimeoutMs: 3000 },
      );
      expect((await ssh.runScript('echo up', [])).stdout).toBe('up');
      // No command in flight: nothing of node-ssh listens for errors now (the crash CI met).
      proxy.reset();
      await new Promise((r) => setTimeout(r, 300));
      await expect(ssh.runScript('true', [])).rejects.toThrow();
      ssh.close();
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      proxy.close();
    }
  });

  it('fails the command when the machine goes away cleanly', async () => {
    const ssh = await sshConnect(
      { host: m.host, port: m.port, username: 'root', privateKey: rootKey.private, hostKeyFingerprint: parseHostKey(m.hostKey) },
      { connectTimeoutMs: 3000, commandTimeoutMs: 3000 },
    );
    const running = expect(ssh.runScript('sleep 30', [])).rejects.toThrow();
    await m.stop();
    await running;
    ssh.close();
  });
});
