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

/** Reads the machine's host keys over the network and keeps only the one berth pinned. */
export async function knownHostsFromScan(machine: SshEndpoint, pinnedFingerprint: string | null): Promise<string> {
  if (!pinnedFingerprint) {
    throw new CliError(`berth has no pinned host key for ${machine.name}: refusing to connect (an admin can run berth machines check ${machine.name})`);
  }
  let scanned: string;
  try {
    const { stdout } = await promisify(execFile)('ssh-keyscan', ['-T', '10', '-p', String(machine.port), machine.host], { maxBuffer: 1024 * 1024 });
    scanned = stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new CliError('ssh-keyscan was not found: install OpenSSH (Debian: apt-get install openssh-client)');
    throw new CliError(`could not read the host key of ${machine.name} (${machine.host}:${machine.port}): ${(e.stderr || e.message).trim()}`, EXIT.unavailable);
  }
  const { matching, offered } = linesWithFingerprint(scanned, pinnedFingerprint);
  if (offered.length === 0) throw new CliError(`${machine.name} (${machine.host}:${machine.port}) offered no host key`, EXIT.unavailable);
  if (matching.length === 0) {
    throw new CliError(
      `the host key of ${machine.name} (${machine.host}:${machine.port}) is not the one berth pinned (${pinnedFingerprint}); ` +
        `it offered ${offered.join(', ')}: refusing to connect`,
    );
  }
  return `${matching.join('\n')}\n`;
}
