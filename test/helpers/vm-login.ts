// A root login into a VM started by a test, with its host key pinned, retried while the
// VM is still on its way; on a timeout the guest's console tells a slow boot from a stuck one.
import fs from 'node:fs';
import path from 'node:path';
import { parseHostKey, sshConnect, type SshSession } from '../../src/infra/ssh.js';
import { rootKey } from './ssh-machines.js';

export async function vmLogin(vm: { dir: string; sshPort: number; hostKey: { public: string } }, timeoutMs = 150_000): Promise<SshSession> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await sshConnect(
        { host: '127.0.0.1', port: vm.sshPort, username: 'root', privateKey: rootKey.private, hostKeyFingerprint: parseHostKey(vm.hostKey.public) },
        { connectTimeoutMs: 5000, commandTimeoutMs: 20_000 },
      );
    } catch (err) {
      if (Date.now() > deadline) {
        const consoleLog = fs.readFileSync(path.join(vm.dir, 'console.log'), 'utf8').split('\n').slice(-15).join('\n');
        throw new Error(`${(err as Error).message}\nguest console (last lines):\n${consoleLog}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
