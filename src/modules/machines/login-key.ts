// berth's own login key for a machine registered with a password. A password login shows
// the password to the machine (sshd hands it to its PAM stack), where anyone who was ever
// root there — a tenant with sudo — can have a module record it. So on the first login
// with the admin's password berth installs a key it generates for that machine into the
// login user's authorized_keys, proves that a login with it works, and keeps the key
// (sealed) instead of the password. A key login shows the machine no secret.
//
// Several processes may log in for the first time at once: each appends its own key, and
// only the one whose conditional update replaces the password keeps its key; it then drops
// every other key of berth's for this machine, and a loser drops its own.
import type { EventBus } from '../../events/bus.js';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { SshError, generateSshKeyPair, sshConnect, type SshSession } from '../../infra/ssh.js';
import type { MachineRow } from './access.js';

/**
 * Adds (`add`), keeps as berth's only key for the machine (`keep`) or drops (`drop`) the key
 * on stdin in the login user's authorized_keys. berth's lines end with the marker `$2`.
 */
const LOGIN_KEY = String.raw`
set -eu
user="$1"; marker="$2"; mode="$3"
IFS= read -r key
home=$(getent passwd "$user" | cut -d: -f6)
if [ -z "$home" ]; then echo "the login user $user has no home directory" >&2; exit 1; fi
dir="$home/.ssh"; file="$dir/authorized_keys"; line="$key $marker"
if [ "$mode" = add ]; then
  group=$(id -gn "$user")
  [ -d "$dir" ] || install -d -m 700 -o "$user" -g "$group" "$dir"
  [ -e "$file" ] || install -m 600 -o "$user" -g "$group" /dev/null "$file"
  grep -qxF -- "$line" "$file" && exit 0
  # A last line without its newline would swallow ours.
  if [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then echo >>"$file"; fi
  printf '%s\n' "$line" >>"$file"
  exit 0
fi
[ -f "$file" ] || exit 0
tmp=$(mktemp "$dir/.authorized_keys.XXXXXX")
if [ "$mode" = keep ]; then
  { grep -vF -- " $marker" "$file" || true; printf '%s\n' "$line"; } >"$tmp"
else
  { grep -vxF -- "$line" "$file" || true; } >"$tmp"
fi
chown --reference="$file" "$tmp"
chmod --reference="$file" "$tmp"
mv "$tmp" "$file"
`;

const markerOf = (machine: Pick<MachineRow, 'id'>) => `berth-login-key:${machine.id}`;

export function createLoginKeyInstaller(deps: {
  prisma: PrismaClient;
  secretBox: SecretBox;
  timeouts: { connectTimeoutMs: number; commandTimeoutMs: number };
  events: Pick<EventBus, 'raise'>;
}) {
  const { prisma, secretBox, timeouts, events } = deps;

  async function edit(session: SshSession, machine: MachineRow, publicKey: string, mode: 'add' | 'keep' | 'drop'): Promise<void> {
    const r = await session.runScript(LOGIN_KEY, [machine.username, markerOf(machine), mode], { stdin: `${publicKey}\n` });
    if (r.code !== 0) throw new Error(r.stderr.trim().slice(0, 200) || `exit ${r.code}`);
  }

  /**
   * On `session`, logged in with `machine`'s password: installs a new key of berth's, checks a
   * login with it, and stores it sealed in place of the password. Throws SshError saying what
   * failed (the password stays stored, and the next login tries again).
   */
  return async function replacePasswordByKey(session: SshSession, machine: MachineRow): Promise<void> {
    const pair = generateSshKeyPair(`berth login key for ${machine.name}`);
    const publicKey = pair.public.split(' ').slice(0, 2).join(' ');
    try {
      await edit(session, machine, publicKey, 'add');
    } catch (err) {
      throw new SshError(`could not add berth's login key to ${machine.username}'s ~/.ssh/authorized_keys: ${(err as Error).message}`);
    }
    try {
      const target = { host: machine.host, port: machine.port, username: machine.username, privateKey: pair.private, hostKeyFingerprint: session.fingerprint };
      (await sshConnect(target, timeouts)).close();
    } catch (err) {
      await edit(session, machine, publicKey, 'drop').catch(() => {});
      throw new SshError(
        `berth's login key was added to ${machine.username}'s ~/.ssh/authorized_keys but a login with it failed ` +
          `(does sshd read that file, with PubkeyAuthentication on?): ${(err as Error).message}`,
      );
    }
    // Only from the password this login used: another process, or an admin's new credential, may have come first.
    const { count } = await prisma.machine.updateMany({
      where: { id: machine.id, credentialKind: 'password', keepPassword: false, credential: { equals: machine.credential } },
      data: { credentialKind: 'private_key', credential: secretBox.seal(pair.private) },
    });
    if (count === 1) await events.raise('machine.edited', { machineId: machine.id, name: machine.name, change: 'updated' });
    // Best effort: a line left over is a public key whose private half no one holds.
    await edit(session, machine, publicKey, count === 1 ? 'keep' : 'drop').catch(() => {});
  };
}

export type ReplacePasswordByKey = ReturnType<typeof createLoginKeyInstaller>;
