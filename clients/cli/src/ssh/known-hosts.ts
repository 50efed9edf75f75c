// A known_hosts file holding exactly the host keys berth pinned for a machine, so that
// OpenSSH checks strictly (StrictHostKeyChecking=yes) and never trusts on first use.
//
// Where berth's answer carries the keys themselves (a reservation's `known_hosts`, a
// machine's `host_key` line), they are used as they are. Until then berth gives only the
// SHA256 fingerprint of the pinned key: the machine's keys are read with ssh-keyscan and
// only one whose fingerprint is the pinned one is written; none matching is a refusal.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { CliError, EXIT } from '../errors.js';

export interface SshEndpoint {
  name: string;
  host: string;
  port: number;
}

/** How OpenSSH names a host in known_hosts: bare on port 22, `[host]:port` otherwise. */
const knownHostsName = (host: string, port: number) => (port === 22 ? host : `[${host}]:${port}`);

/** The known_hosts text berth's answer carries, when it carries one (reservation first, then the machine's key line). */
export function knownHostsFromAnswer(reservation: object, machine: SshEndpoint & { host_key?: unknown }): string | null {
  const text = (reservation as { known_hosts?: unknown }).known_hosts;
  if (typeof text === 'string' && text.trim()) return text.endsWith('\n') ? text : `${text}\n`;
  const key = typeof machine.host_key === 'string' ? machine.host_key.trim() : '';
  if (key) return `${knownHostsName(machine.host, machine.port)} ${key}\n`;
  return null;
}

/** The SHA256 fingerprint of a public key blob (base64), as `ssh-keygen -l` prints it. */
export function fingerprintOf(base64Blob: string): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(base64Blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** Keeps the known_hosts lines whose key has the pinned fingerprint. */
export function linesWithFingerprint(knownHosts: string, pinned: string): { matching: string[]; offered: string[] } {
  const matching: string[] = [];
  const offered: string[] = [];
  for (const line of knownHosts.split('\n')) {
    const [, , blob] = line.trim().split(/\s+/);
    if (!blob || line.startsWith('#')) continue;
    const fingerprint = fingerprintOf(blob);
    offered.push(fingerprint);
    if (fingerprint === pinned) matching.push(line.trim());
  }
  return { matching, offered };
}

/**
 * One ssh-keyscan of some key types. Each type is a key exchange of its own, slow on an
 * emulated VM under load: hence one type at a time, and a patient timeout.
 */
async function scan(machine: SshEndpoint, types: string): Promise<{ keys: string; notes: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)('ssh-keyscan', ['-T', '30', '-t', types, '-p', String(machine.port), '--', machine.host], {
      maxBuffer: 1024 * 1024,
    });
    return { keys: stdout, notes: stderr };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new CliError('ssh-keyscan was not found: install OpenSSH (Debian: apt-get install openssh-client)');
    // It exits non-zero when a host gave no key of these types; what it did read still counts.
    return { keys: e.stdout ?? '', notes: e.stderr ?? '' };
  }
}

/** Reads the machine's host keys over the network and keeps only the one berth pinned. */
export async function knownHostsFromScan(machine: SshEndpoint, pinnedFingerprint: string | null): Promise<string> {
  if (!pinnedFingerprint) {
    throw new CliError(`berth has no pinned host key for ${machine.name}: refusing to connect (an admin can run berth machines check ${machine.name})`);
  }
  const offered: string[] = [];
  const notes: string[] = [];
  // Ed25519 first: what berth's VMs and most machines pin; the older types only if it is not that.
  for (const types of ['ed25519', 'ecdsa,rsa']) {
    const scanned = await scan(machine, types);
    const found = linesWithFingerprint(scanned.keys, pinnedFingerprint);
    if (found.matching.length) return `${found.matching.join('\n')}\n`;
    offered.push(...found.offered);
    notes.push(scanned.notes.split('\n').filter((line) => line && !line.startsWith('#')).join(' '));
    // No SSH banner either (ssh-keyscan notes each one as a `# host SSH-2.0-…` line): nobody answered.
    if (!found.offered.length && !/^# .*SSH-/m.test(scanned.notes)) {
      throw new CliError(`${machine.name} (${machine.host}:${machine.port}) did not answer SSH`, EXIT.unavailable);
    }
  }
  if (offered.length === 0) {
    const why = notes.filter(Boolean).join('; ');
    throw new CliError(`could not read the host key of ${machine.name} (${machine.host}:${machine.port})${why ? `: ${why}` : ''}`, EXIT.unavailable);
  }
  throw new CliError(
    `the host key of ${machine.name} (${machine.host}:${machine.port}) is not the one berth pinned (${pinnedFingerprint}); ` +
      `it offered ${offered.join(', ')}: refusing to connect`,
  );
}
