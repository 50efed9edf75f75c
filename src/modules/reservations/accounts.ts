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
owners=/var/lib/berth/accounts; ids=/var/lib/berth/ids
if getent passwd "$user" >/dev/null; then
  # A retry of this very reservation finds its own account: nothing more to do.
  if [ "$(cat "$owners/$user" 2>/dev/null)" = "$2" ]; then echo exists; exit 0; fi
  echo "an account named $user already exists on this machine" >&2
  exit 10
fi
IFS= read -r password_hash || true
IFS= read -r pubkey || true
install -d -m 700 -o root -g root /var/lib/berth "$owners" "$ids"
# Recorded before the account exists: a crash in between leaves a record, never an unowned account.
printf '%s\n' "$2" >"$owners/$user"
# The account's uid (and its group's gid, the same number) comes from berth's own range,
# 65536-99999: above UID_MAX/GID_MAX, so the machine's own useradd never hands one of them
# to a user of its own, and below the subordinate ids (100000 up). A counter kept here goes
# round the range, skipping numbers in use and numbers still retired (REMOVE retires an
# account's ids before removing it and frees them only once a sweep finds nothing of them
# left): a number comes back only after ~34,000 accounts on this machine, and never while
# something of its last holder may remain — a file the sweep could not remove, or one it
# cannot see (a network filesystem, a kernel keyring). A counter alone would never reuse,
# but would run out of ids that are safe on every system; retirement alone would hand the
# next tenant the number just freed. No subordinate ids (SUB_UID_COUNT=0): berth could
# neither sweep nor retire a tenant's 65,536 of them. (-K: within berth's range, useradd
# neither warns about the uid nor gives the group another gid.)
exec 9>>"$ids/lock"
flock 9
first=65536; last=99999
from=$(cat "$ids/next" 2>/dev/null || true)
case "$from" in '' | *[!0-9]*) from=$first ;; esac
if [ "$from" -lt "$first" ] || [ "$from" -gt "$last" ]; then from=$first; fi
id=$({ getent passwd | cut -d: -f3; getent group | cut -d: -f3; cut -d' ' -f2 "$ids/retired" 2>/dev/null || true; } |
  awk -v from="$from" -v first="$first" -v last="$last" '{ taken[$1] = 1 }
    END { for (i = 0; i <= last - first; i++) { n = first + (from - first + i) % (last - first + 1); if (!(n in taken)) { print n; exit } } }')
if [ -z "$id" ]; then echo "no free account id left in $first-$last on this machine" >&2; exit 1; fi
printf '%s\n' "$((id < last ? id + 1 : first))" >"$ids/next"
# The counter has moved on: another creation picks another id, so the lock can go.
exec 9>&-
useradd --uid "$id" --user-group --create-home --shell /bin/bash --comment "$marker" \
  -K UID_MIN="$first" -K UID_MAX="$last" -K GID_MIN="$id" -K GID_MAX="$id" -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
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
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
user="$1"; marker="berth reservation $2"; owners=/var/lib/berth/accounts; ids=/var/lib/berth/ids
# A creation for this reservation may still be running (its berth process died, or was
# too slow and lost its lease): stop it first, or it could finish after this cleanup.
killed=no
pkill -KILL -f -- "berth-create-$2" 2>/dev/null && killed=yes
pkill -KILL -f -- "$marker" 2>/dev/null && killed=yes
[ "$killed" = yes ] && sleep 0.1

# Every process of a uid: kill(-1) run as that uid reaches all of them in one pass, forks
# included (pkill reads /proc, then signals; a fork bomb outruns it). A zombie is no
# process any more: its parent just has not collected it yet.
stop_processes() {
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    setpriv --reuid="$1" --regid="$1" --clear-groups kill -KILL -1 2>/dev/null
    pkill -KILL -U "$1" 2>/dev/null; pkill -KILL -u "$1" 2>/dev/null
    ps -e -o ruid=,euid=,suid=,stat= | awk -v n="$1" '($1 == n || $2 == n || $3 == n) && $4 !~ /^Z/ { found = 1 } END { exit !found }' || return 0
    sleep 0.2
  done
  return 1
}

# The mount points to walk: every local filesystem, read-only ones included (what is there
# counts too). Network filesystems are not this machine's, and pseudo filesystems hold no
# files of a user; /dev/shm and /dev/mqueue (POSIX shared memory and message queues) are walked.
local_mounts() {
  local mnt type
  while read -r _ mnt type _; do
    case "$type" in
      proc | sysfs | devtmpfs | devpts | cgroup | cgroup2 | securityfs | debugfs | tracefs | pstore | bpf | configfs | \
        fusectl | binfmt_misc | autofs | efivarfs | selinuxfs | rpc_pipefs | nfsd | nsfs | \
        nfs | nfs4 | cifs | smb3 | smbfs | ceph | glusterfs | 9p | afs | lustre | gpfs | beegfs | davfs | fuse | fuse.*) ;;
      *) printf '%b\n' "$mnt" ;;
    esac
  done </proc/self/mounts
}

# The System V IPC objects (shm, sem, msg) that a retired uid or gid owns or created: their
# id, owner uid and gid.
ipc_of() {
  awk -v uids="$uids" -v gids="$gids" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    index(uids, " " $col["uid"] " ") || index(uids, " " $col["cuid"] " ") || index(gids, " " $col["gid"] " ") || index(gids, " " $col["cgid"] " ") {
      print $2, $col["uid"], $col["gid"] }' "$1"
}

# Removes what is left of every retired id ("uid N" or "gid N" lines in $ids/retired):
# processes, System V IPC objects, and files — a directory of the id with everything in
# it. find does not follow symlinks, and -execdir removes each entry from a directory find
# opened itself, so a symlink swapped into a path cannot redirect it. An id is freed once
# nothing of it is found; what remains keeps it retired, and the next release tries again.
# Cost: one walk of the local filesystems (~0.1 s for a container's root; a machine with
# millions of files takes seconds to minutes, within BERTH_SSH_COMMAND_TIMEOUT_MS).
sweep() {
  [ -s "$ids/retired" ] || return 0
  local kind n uids=" " gids=" " every=" " left=" " mnt type opts f flag walked=ok
  # find's test, kept in the positional parameters: -false -o -uid N -o -gid N ...
  set -- -false
  while read -r kind n; do
    case "$n" in '' | *[!0-9]*) continue ;; esac
    # An id an account or group holds (this one, if userdel failed; one given out by hand) is
    # not swept: its files are theirs. It stays retired.
    if getent "$([ "$kind" = uid ] && echo passwd || echo group)" "$n" >/dev/null; then continue; fi
    every="$every$kind:$n "
    case "$kind" in
      uid) uids="$uids$n "; set -- "$@" -o -uid "$n"; stop_processes "$n" || left="$left uid:$n " ;;
      gid) gids="$gids$n "; set -- "$@" -o -gid "$n" ;;
    esac
  done <"$ids/retired"
  [ "$every" != " " ] || return 0
  for f in shm sem msg; do
    case "$f" in shm) flag=-m ;; sem) flag=-s ;; msg) flag=-q ;; esac
    f=/proc/sysvipc/$f
    [ -r "$f" ] || continue
    # As the object's owner: root without CAP_SYS_ADMIN (in a container) may not remove it.
    ipc_of "$f" | while read -r n owner group; do setpriv --reuid="$owner" --regid="$group" --clear-groups ipcrm "$flag" "$n" 2>/dev/null; done
    if [ -n "$(ipc_of "$f")" ]; then left="$left$every"; fi
  done
  # A tmpfs logind mounted for the user, a FUSE filesystem the user mounted: unmounted, not walked.
  while read -r _ mnt type opts _; do
    mnt=$(printf '%b' "$mnt")
    for n in $uids; do
      case "$mnt|$type|,$opts," in "/run/user/$n|"* | *"|fuse"*"|"*",user_id=$n,"*) umount -l "$mnt" 2>/dev/null ;; esac
    done
  done </proc/self/mounts
  while read -r mnt; do
    find "$mnt" -xdev \( "$@" \) \
      \( -type d -prune -execdir rm -rf --one-file-system -- {} + -o -execdir rm -f -- {} + \) 2>/dev/null || walked=failed
  done < <(local_mounts)
  # find also fails when another user's file vanishes under it: only then, look at what is really left.
  if [ "$walked" = failed ]; then
    while read -r mnt; do
      left="$left $(find "$mnt" -xdev \( "$@" \) -printf 'uid:%U gid:%G\n' 2>/dev/null | sort -u | tr '\n' ' ')"
    done < <(local_mounts)
  fi
  # Kept: what is left, and what another release retired meanwhile (this sweep did not look for it).
  (
    flock 9
    while read -r kind n; do
      case "$left" in *" $kind:$n "*) printf '%s %s\n' "$kind" "$n"; continue ;; esac
      case "$every" in *" $kind:$n "*) ;; *) printf '%s %s\n' "$kind" "$n" ;; esac
    done <"$ids/retired" >"$ids/retired.new"
    mv "$ids/retired.new" "$ids/retired"
  ) 9>>"$ids/lock"
  if [ -s "$ids/retired" ]; then echo "something of $(tr '\n' ' ' <"$ids/retired")is still on this machine: those ids stay retired" >&2; fi
  return 0
}

if getent passwd "$user" >/dev/null; then
  if [ "$(cat "$owners/$user" 2>/dev/null)" != "$2" ]; then
    echo "the account $user was not made by this reservation; leaving it alone" >&2
    exit 11
  fi
  entry=$(getent passwd "$user")
  uid=$(echo "$entry" | cut -d: -f3); gid=$(echo "$entry" | cut -d: -f4); home=$(echo "$entry" | cut -d: -f6)
  # Retired before anything is removed: a crash from here on leaves ids that are never
  # handed out again until a sweep finds nothing of them. The gid only when it is the
  # account's own group (userdel removes it); a shared group's files are not the account's.
  install -d -m 700 -o root -g root "$ids"
  (
    flock 9
    grep -qx "uid $uid" "$ids/retired" 2>/dev/null || printf 'uid %s\n' "$uid" >>"$ids/retired"
    if [ "$(getent group "$gid" | cut -d: -f1)" = "$user" ]; then
      grep -qx "gid $gid" "$ids/retired" 2>/dev/null || printf 'gid %s\n' "$gid" >>"$ids/retired"
    fi
  ) 9>>"$ids/lock"
  stop_processes "$uid"
  # Jobs kept by name: crontab and at would run them for a later account of the same name.
  if command -v crontab >/dev/null; then crontab -r -u "$user" 2>/dev/null; fi
  if command -v atq >/dev/null; then atq | awk -v u="$user" '$NF == u { print $1 }' | xargs -r atrm 2>/dev/null; fi
  rm -f "/var/lib/systemd/linger/$user"
  userdel --remove "$user" 2>/dev/null || userdel --remove --force "$user" 2>/dev/null || true
  rm -f "/etc/sudoers.d/berth-$user"
  if [ -n "$home" ] && [ -e "$home" ]; then echo "the home directory $home is still there" >&2; exit 13; fi
fi
if getent passwd "$user" >/dev/null; then echo "the account $user is still there" >&2; exit 12; fi
sweep
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
