// The Unix account a reservation puts on each machine. The scripts are constant text;
// the username and reservation id arrive as validated arguments, the password's crypt(3)
// hash and the public key on stdin. Ownership is recorded where only root can write
// (/var/lib/berth/accounts/<user> holds the reservation id): removal only ever touches
// accounts berth made for that reservation, and the account's user cannot disown it
// (the GECOS marker, which `chfn` lets a user edit, is only a label).
import type { SshSession } from '../../infra/ssh.js';

/** Portable Unix names: the same rule as berth usernames, which they default to. */
export { USERNAME_PATTERN as ACCOUNT_NAME } from '../../shared/usernames.js';

/** Names that exist (as users or groups) on a stock Debian system, or would be dangerous. */
export const RESERVED_ACCOUNT_NAMES = new Set([
  'root', 'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'news', 'uucp', 'proxy', 'www-data',
  'backup', 'list', 'irc', 'gnats', 'nobody', 'nogroup', 'sshd', 'messagebus', 'sudo', 'adm', 'admin', 'wheel',
  'staff', 'docker', 'disk', 'shadow', 'tty', 'kmem', 'dialout', 'users', 'operator', 'systemd-network',
  'systemd-resolve', 'systemd-timesync', 'polkitd', 'syslog', 'ubuntu', 'debian', 'berth',
]);

const CREATE = String.raw`
set -eu
user="$1"; marker="berth reservation $2"; grant_sudo="$3"
owners=/var/lib/berth/accounts
if getent passwd "$user" >/dev/null; then
  # A retry of this very reservation finds its own account: nothing more to do.
  if [ "$(cat "$owners/$user" 2>/dev/null)" = "$2" ]; then echo exists; exit 0; fi
  echo "an account named $user already exists on this machine" >&2
  exit 10
fi
IFS= read -r password_hash || true
IFS= read -r pubkey || true
install -d -m 700 -o root -g root /var/lib/berth "$owners"
# Recorded before the account exists: a crash in between leaves a record, never an unowned account.
printf '%s\n' "$2" >"$owners/$user"
useradd --create-home --shell /bin/bash --comment "$marker" "$user"
if [ -n "$password_hash" ]; then
  printf '%s:%s\n' "$user" "$password_hash" | chpasswd -e
else
  # "*": no password can match, yet the account is not "locked", which would bar key logins too.
  usermod -p '*' "$user"
fi
if [ -n "$pubkey" ]; then
  home=$(getent passwd "$user" | cut -d: -f6)
  install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
  printf '%s\n' "$pubkey" >"$home/.ssh/authorized_keys"
  chown "$user:$user" "$home/.ssh/authorized_keys"
  chmod 600 "$home/.ssh/authorized_keys"
fi
if [ "$grant_sudo" = yes ] && [ -d /etc/sudoers.d ]; then
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" >"/etc/sudoers.d/berth-$user"
  chmod 0440 "/etc/sudoers.d/berth-$user"
fi
echo created
`;

const REMOVE = String.raw`
set -u
user="$1"; marker="berth reservation $2"; owners=/var/lib/berth/accounts
# A creation for this reservation may still be running (its berth process died, or was
# too slow and lost its lease): stop it first, or it could finish after this cleanup.
killed=no
pkill -KILL -f -- "berth-create-$2" 2>/dev/null && killed=yes
pkill -KILL -f -- "$marker" 2>/dev/null && killed=yes
[ "$killed" = yes ] && sleep 0.1
if getent passwd "$user" >/dev/null; then
  if [ "$(cat "$owners/$user" 2>/dev/null)" != "$2" ]; then
    echo "the account $user was not made by this reservation; leaving it alone" >&2
    exit 11
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pkill -KILL -u "$user" 2>/dev/null || true
    pgrep -u "$user" >/dev/null || break
    sleep 0.2
  done
  userdel --remove "$user" 2>/dev/null || userdel --remove --force "$user" 2>/dev/null || true
  rm -f "/etc/sudoers.d/berth-$user"
  if [ -n "$home" ] && [ -e "$home" ]; then echo "the home directory $home is still there" >&2; exit 13; fi
fi
if getent passwd "$user" >/dev/null; then echo "the account $user is still there" >&2; exit 12; fi
# The record goes last, and only if it is this reservation's.
if [ "$(cat "$owners/$user" 2>/dev/null)" = "$2" ]; then rm -f "$owners/$user"; fi
echo removed
`;

export class AccountError extends Error {
  override name = 'AccountError';
  constructor(
    message: string,
    /** 'exists': an account of that name was on the machine before berth came. */
    readonly code: 'exists' | 'failed' = 'failed',
  ) {
    super(message);
  }
}

/**
 * Makes the account. Its password arrives hashed (crypt(3) form, set as it is with
 * `chpasswd -e`): the machine never sees it in clear, nor does anything root left there.
 */
export async function createAccount(
  ssh: SshSession,
  account: { username: string; reservationId: string; passwordHash?: string; sshPublicKey?: string; grantSudo: boolean },
): Promise<void> {
  const stdin = `${account.passwordHash ?? ''}\n${account.sshPublicKey ?? ''}\n`;
  const r = await ssh.runScript(CREATE, [account.username, account.reservationId, account.grantSudo ? 'yes' : 'no'], {
    stdin,
    name: `berth-create-${account.reservationId}`,
  });
  if (r.code === 10) throw new AccountError(r.stderr.trim(), 'exists');
  if (r.code !== 0) throw new AccountError(r.stderr.trim() || `account creation failed (exit ${r.code})`);
}

/** Removes the reservation's account, kills its processes and checks it is gone. "not-ours" = nothing berth made. */
export async function removeAccount(ssh: SshSession, account: { username: string; reservationId: string }): Promise<'removed' | 'not-ours'> {
  const r = await ssh.runScript(REMOVE, [account.username, account.reservationId]);
  if (r.code === 11) return 'not-ours';
  if (r.code !== 0) throw new AccountError(r.stderr.trim() || `account removal failed (exit ${r.code})`);
  return 'removed';
}
