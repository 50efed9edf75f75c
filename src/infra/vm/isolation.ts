// What a guest may reach (BERTH_VM_EGRESS), enforced on the VM host.
//
//   none      QEMU's user network with restrict=on: the guest reaches nothing at all, while
//             its forwarded SSH port still answers.
//   internet  the guest reaches the networks this host reaches, but none of this host's
//             own addresses: not its loopback (berth, the database, other VMs' forwarded
//             ports, anything on 127.0.0.1, which QEMU's 10.0.2.2 leads to) and not its
//             other addresses. QEMU drops root for an unprivileged user (-runas) before the
//             guest runs, so every connection the guest makes through it is that user's;
//             one nftables rule (in this host's network namespace) refuses that user's
//             connections to any local address, except DNS, which the guest's resolver at
//             10.0.2.3 forwards to this host's. Only connections that user opens are
//             refused (conntrack state new): the answers on connections clients opened to
//             the forwarded SSH port go out as usual.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type Egress = 'none' | 'internet';

/** The unprivileged user QEMU runs guests as under `internet` egress (made by scripts/setup.sh). */
export const VM_USER = 'berth-vm';
const TABLE = 'berth_vm_egress';

const ruleset = `
table inet ${TABLE} {
  chain output {
    type filter hook output priority filter; policy accept;
    meta skuid "${VM_USER}" ct state new fib daddr type local meta l4proto { tcp, udp } th dport 53 accept
    meta skuid "${VM_USER}" ct state new fib daddr type local reject
  }
}
`;

/**
 * Makes this host enforce `egress` (idempotent). `internet` needs root, the VM user and
 * nftables; a host that cannot say why: VMs are then unavailable here.
 */
export async function enforceEgress(egress: Egress): Promise<void> {
  if (egress === 'none') return;
  try {
    await run('id', ['-u', VM_USER]);
  } catch (err) {
    throw new Error(`BERTH_VM_EGRESS=internet needs the user ${VM_USER} (scripts/setup.sh makes it, as root)`, { cause: err });
  }
  try {
    // Replaced whole: a table left by an older berth never keeps other rules.
    await nft(`add table inet ${TABLE}\ndelete table inet ${TABLE}\n${ruleset}`);
  } catch (err) {
    throw new Error(`BERTH_VM_EGRESS=internet needs nftables and root to keep guests off this host: ${(err as Error).message.split('\n')[0]}`, {
      cause: err,
    });
  }
}

function nft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], (err) => (err ? reject(err) : resolve()));
    child.stdin?.end(script);
  });
}

/** The VM user's numeric ids, for what berth hands over to a QEMU running as that user. */
export async function vmUserIds(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', VM_USER]), run('id', ['-g', VM_USER])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** QEMU's arguments for `egress`: its user network's restriction, and the user the guest runs as. */
export function egressArgs(egress: Egress): { restrict: 'on' | 'off'; runAs: string[] } {
  return egress === 'none' ? { restrict: 'on', runAs: [] } : { restrict: 'off', runAs: ['-runas', VM_USER] };
}
