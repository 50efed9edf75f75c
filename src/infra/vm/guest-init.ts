// PID 1 of the guest after switch_root (/berth/init, on a tmpfs the initramfs fills with
// a static busybox, berth-guest and the seed disk's files). The same script for every VM
// of an image and for its template snapshot: it holds nothing of any VM. It gets the VM's
// identity (identity.ts) from the seed disk (a cold boot) or, when the seed has none, from
// the identity channel: a template waits there, blocked in a read, and is snapshotted so;
// each clone resumes in that read and gets its own. berth-guest applies it. Then sshd
// (already running in a template), then the image's command.
import type { Egress } from './isolation.js';

export const IDENTITY_PORT = 'berth.identity';

/** Console lines berth (and its bench) follow. */
export const GUEST_SAYS = {
  waiting: 'berth-init: waiting for identity',
  identity: 'berth-init: identity applied',
  sshd: 'berth-init: sshd started',
  sshdFailed: 'berth-init: sshd failed',
  badIdentity: 'berth-init: no usable identity',
} as const;

/** What the image itself runs (its Docker config), started after sshd. */
export interface GuestCommand {
  argv: string[];
  env: string[];
  user: string | null;
  workdir: string | null;
}

/** The command of an image's recorded Docker config (entrypoint + cmd, env, user, workdir), if any. */
export function imageCommand(config: unknown): GuestCommand | null {
  const c = (config ?? {}) as { entrypoint?: string[] | null; cmd?: string[] | null; env?: string[]; user?: string | null; workdir?: string | null };
  const argv = [...(c.entrypoint ?? []), ...(c.cmd ?? [])];
  return argv.length ? { argv, env: c.env ?? [], user: c.user ?? null, workdir: c.workdir ?? null } : null;
}

export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function commandLines(c: GuestCommand | null | undefined): string[] {
  if (!c || !c.argv.length) return [];
  const [program, ...args] = c.argv.map(shellQuote);
  const user = c.user && !['root', '0', '0:0'].includes(c.user) ? c.user : null;
  // runuser takes names, setpriv numeric ids ("1000" or "1000:1000"); both are the image's.
  const [uid, gid] = (user ?? '').split(':');
  const run = !user
    ? `"$(image_path ${program})" ${args.join(' ')}`
    : /^\d+(:\d+)?$/.test(user)
      ? `"$(image_path setpriv)" --reuid=${uid} --regid=${gid ?? uid} --clear-groups ${c.argv.map(shellQuote).join(' ')}`
      : `"$(image_path runuser)" -u ${shellQuote(user)} -- ${c.argv.map(shellQuote).join(' ')}`;
  return [
    // The image's programs, found on its PATH: this shell (busybox) would run its own applet of that name.
    'image_path() {',
    '  case "$1" in */*) echo "$1"; return ;; esac',
    '  local d IFS=:',
    '  for d in $PATH; do [ -f "$d/$1" ] && [ -x "$d/$1" ] && { echo "$d/$1"; return; }; done',
    '  echo "$1"',
    '}',
    '(',
    ...c.env.map((e) => `  export ${shellQuote(e)}`),
    `  cd ${shellQuote(c.workdir || '/')} 2>/dev/null || cd /`,
    `  echo "berth-init: starting the image's command"`,
    `  exec ${run.trimEnd()}`,
    ') </dev/null >/dev/console 2>&1 &',
  ];
}

/** Where a template's seed puts its throwaway host key (sshd must find *a* key to start). */
export const TEMPLATE_HOST_KEY = 'template-host-key';

/**
 * The guest init for an image's `command`, under the host's `egress` policy (a resolver only
 * where the guest has a network).
 */
export function guestInit({ command, egress }: { command: GuestCommand | null | undefined; egress: Egress }): string {
  return [
    '#!/berth/bin/busybox sh',
    // busybox runs its own applets for berth's steps; the image's programs are found on its PATH.
    'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'mount -t proc proc /proc 2>/dev/null',
    'mount -t sysfs sysfs /sys 2>/dev/null',
    'mkdir -p /dev/pts /dev/shm /run/sshd /etc/ssh',
    'mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null',
    'mount -t tmpfs tmpfs /dev/shm 2>/dev/null',
    egress === 'internet' ? `echo 'nameserver 10.0.2.3' >/etc/resolv.conf` : ': >/etc/resolv.conf',
    'channel=',
    'say() { echo "$1"; [ -z "$channel" ] || echo "$1" >&3; }',
    // A host that knows its own name (sudo, hostname -f): the name the identity gave it.
    'own_name() {',
    '  read -r name </etc/hostname',
    `  printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t%s\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' "$name" >/etc/hosts`,
    '}',
    // sshd forks into the background before it listens; its pid file means it listens.
    // UseDNS no: a login is never slowed by a reverse lookup of the client.
    'start_sshd() {',
    '  rm -f /run/sshd.pid',
    '  /usr/sbin/sshd -o HostKey=/etc/ssh/ssh_host_ed25519_key -o PermitRootLogin=prohibit-password -o UsePAM=no -o UseDNS=no || return 1',
    '  i=0; while [ ! -s /run/sshd.pid ] && [ $i -lt 500 ]; do usleep 10000; i=$((i + 1)); done',
    '}',
    'if [ -f /berth/identity ]; then',
    // A cold boot: the VM's identity is on its seed disk.
    `  /berth/bin/berth-guest identity </berth/identity || { say "${GUEST_SAYS.badIdentity}"; exec /berth/bin/berth-guest reap; }`,
    '  rm -f /berth/identity',
    '  own_name',
    `  say "${GUEST_SAYS.identity}"`,
    `  if start_sshd; then say "${GUEST_SAYS.sshd}"; else say "${GUEST_SAYS.sshdFailed} to start"; fi`,
    'else',
    // A template: it waits on the identity channel, and is snapshotted waiting.
    '  for p in /sys/class/virtio-ports/*; do',
    `    [ "$(cat "$p/name" 2>/dev/null)" = ${IDENTITY_PORT} ] && channel=/dev/\${p##*/}`,
    '  done',
    `  [ -n "$channel" ] || { echo "${GUEST_SAYS.badIdentity}: no seed identity and no channel"; exec /berth/bin/berth-guest reap; }`,
    '  exec 3<>"$channel"',
    // sshd is started here, before the snapshot, so that no clone pays for its start. It
    // re-executes itself for every connection and reads the host key then: the template's
    // own key (from the seed; trusted by nobody) until the identity replaces it. Nobody can
    // connect before that: berth forwards a clone's port only once its identity is applied.
    `  cp /berth/${TEMPLATE_HOST_KEY} /etc/ssh/ssh_host_ed25519_key && cp /berth/${TEMPLATE_HOST_KEY}.pub /etc/ssh/ssh_host_ed25519_key.pub`,
    `  rm -f /berth/${TEMPLATE_HOST_KEY} /berth/${TEMPLATE_HOST_KEY}.pub`,
    // Not with the channel: only this init speaks on it (3>&-).
    `  start_sshd 3>&- || { say "${GUEST_SAYS.sshdFailed} to start"; exec /berth/bin/berth-guest reap; }`,
    // Everything the clones will need is on disk before the snapshot is taken.
    '  sync',
    `  echo "${GUEST_SAYS.waiting}"`,
    `  /berth/bin/berth-guest identity <&3 || { say "${GUEST_SAYS.badIdentity}"; exec /berth/bin/berth-guest reap; }`,
    '  own_name',
    `  say "${GUEST_SAYS.identity}"`,
    `  say "${GUEST_SAYS.sshd}"`,
    'fi',
    'exec 3>&-',
    ...commandLines(command),
    'exec /berth/bin/berth-guest reap',
    '',
  ].join('\n');
}
