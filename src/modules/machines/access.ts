// The one way berth opens an SSH session to a pool machine: decrypt its credential, pin
// its host key (recording it on first contact), take the machine offline when the key has
// changed instead of trusting the impostor, and on the first login with a password replace
// it by a key of berth's own (login-key.ts) unless the admin keeps the password.
import type { EventBus } from '../../events/bus.js';
import type { Machine, PrismaClient } from '../../generated/prisma/client.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { HostKeyMismatchError, sshConnect, type SshSession } from '../../infra/ssh.js';
import type { ReplacePasswordByKey } from './login-key.js';
import type { MachineState } from './state.js';

export type MachineRow = Machine;

export interface MachineAccess {
  open(machine: MachineRow): Promise<SshSession>;
}

export function createMachineAccess(deps: {
  prisma: PrismaClient;
  state: Pick<MachineState, 'hostKeyChanged'>;
  secretBox: SecretBox;
  replacePasswordByKey: ReplacePasswordByKey;
  timeouts: { connectTimeoutMs: number; commandTimeoutMs: number };
  events: Pick<EventBus, 'raise'>;
}): MachineAccess {
  const { prisma, state, secretBox, replacePasswordByKey, timeouts, events } = deps;
  return {
    async open(machine) {
      const credential = secretBox.open(machine.credential);
      try {
        const session = await sshConnect(
          {
            host: machine.host,
            port: machine.port,
            username: machine.username,
            ...(machine.credentialKind === 'password' ? { password: credential } : { privateKey: credential }),
            hostKeyFingerprint: machine.hostKeyFingerprint,
          },
          timeouts,
        );
        if (!machine.hostKeyFingerprint) {
          // First contact: trust on first use, and from now on only this key.
          const { count } = await prisma.machine.updateMany({
            where: { id: machine.id, hostKeyFingerprint: null },
            data: { hostKeyFingerprint: session.fingerprint, hostKey: session.hostKey },
          });
          if (count === 1) await events.raise('machine.edited', { machineId: machine.id, name: machine.name, change: 'host_key_pinned' });
        } else if (!machine.hostKey) {
          // Pinned by its fingerprint only: the key that matched it is the one clients need.
          await prisma.machine.updateMany({
            where: { id: machine.id, hostKeyFingerprint: session.fingerprint, hostKey: null },
            data: { hostKey: session.hostKey },
          });
        }
        if (machine.credentialKind === 'password' && !machine.keepPassword) {
          await replacePasswordByKey(session, machine).catch((err: unknown) => {
            session.close();
            throw err;
          });
        }
        return session;
      } catch (err) {
        if (err instanceof HostKeyMismatchError) await state.hostKeyChanged(machine.id, err.message);
        throw err;
      }
    },
  };
}
