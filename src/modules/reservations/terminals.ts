// A line written to the terminals of an account's logged-in sessions on a machine, as
// `write` would to one user, but to every terminal of theirs and to no one else's. The
// script is constant text; the account name arrives as a validated argument and the line
// on stdin. The terminals are found from the account's processes (`ps`, which the
// smallest Debian has), not from utmp, which a minimal system or sshd without PAM may not
// keep; a terminal is written only when the account owns it, as sshd makes it do.
import type { SshSession } from '../../infra/ssh.js';
import { ACCOUNT_NAME } from './accounts.js';

/** The most terminals one account's line goes to: a session count no person reaches, and a bound on the script's time. */
export const MAX_TERMINALS = 64;

const WRITE = String.raw`
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
user="$1"; max="$2"
IFS= read -r line || true
[ -n "$line" ] || { echo "no line to write" >&2; exit 2; }
uid=$(getent passwd "$user" | cut -d: -f3)
# No such account here (removed, or never made on this machine): no one to tell.
if [ -z "$uid" ]; then echo 0; exit 0; fi
written=0
# The terminals of the account's processes: names the kernel gives (pts/N, ttyN), never a
# path the account could choose.
for tty in $(ps -o tty= -u "$uid" 2>/dev/null | sort -u | head -n "$max"); do
  case "$tty" in pts/ | pts/*[!0-9]* | tty | tty*[!0-9]*) continue ;; pts/* | tty*) ;; *) continue ;; esac
  dev=/dev/$tty
  # Only a terminal the account owns: a process of theirs may hold another's terminal open.
  [ -c "$dev" ] && [ "$(stat -c %u "$dev" 2>/dev/null)" = "$uid" ] || continue
  # A terminal whose output is stopped (Ctrl-S) would hold the write for ever.
  if timeout 2 sh -c 'printf "\r\n%s\r\n" "$1" >"$2"' sh "$line" "$dev" 2>/dev/null; then written=$((written + 1)); fi
done
echo "$written"
`;

export class TerminalWriteError extends Error {
  override name = 'TerminalWriteError';
}

/** Writes `line` to every terminal `account` is logged in on through `ssh`'s machine; answers how many it reached. */
export async function writeToTerminals(ssh: SshSession, account: string, line: string): Promise<number> {
  if (!ACCOUNT_NAME.test(account)) throw new TerminalWriteError(`refusing to write to the terminals of ${JSON.stringify(account)}: not an account name`);
  // One line of text: a control character could move the cursor or retitle the terminal.
  if (!/^[^\p{Cc}]+$/u.test(line)) throw new TerminalWriteError('refusing to write a line with control characters to a terminal');
  const r = await ssh.runScript(WRITE, [account, String(MAX_TERMINALS)], { stdin: `${line}\n` });
  if (r.code !== 0) throw new TerminalWriteError(r.stderr.trim() || `writing to terminals failed (exit ${r.code})`);
  // The count is the last line: the login's ~/.bashrc, which bash reads for sshd's commands, may print before it.
  const written = Number(r.stdout.split('\n').pop());
  return Number.isInteger(written) ? written : 0;
}
