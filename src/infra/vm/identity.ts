// What makes a VM itself rather than any other guest booted from the same image: its SSH
// host key, berth's root key for it, its hostname and machine-id, fresh randomness for the
// kernel's pool and, for a restored guest, the wall-clock time. berth hands it over as
// lines of `key value` (values base64 where they may hold anything) ending in `end`:
// written to the seed disk for a cold boot, sent over the identity channel to a restored
// guest, which waits for it before it starts sshd (guest-init.ts reads and applies it).
import { randomBytes } from 'node:crypto';

export interface GuestIdentity {
  hostname: string;
  hostKey: { private: string; public: string };
  authorizedKeys: string[];
}

/** Bytes of host randomness mixed into the guest's pool before its CRNG is reseeded. */
const RANDOM_BYTES = 64;
const b64 = (s: string) => Buffer.from(s).toString('base64');

/**
 * The identity as the guest reads it. `withClock`: a restored guest wakes up with the time
 * its template was snapshotted at; a cold boot reads the right time from its RTC.
 */
export function identityMessage(id: GuestIdentity, opts: { withClock: boolean }): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id.hostname)) throw new Error(`not a hostname: ${JSON.stringify(id.hostname)}`);
  const lines = [
    `random ${randomBytes(RANDOM_BYTES).toString('base64')}`,
    `hostname ${id.hostname}`,
    `machine-id ${randomBytes(16).toString('hex')}`,
    `host-key ${b64(id.hostKey.private)}`,
    `host-key-pub ${b64(id.hostKey.public.trim() + '\n')}`,
    `authorized-keys ${b64(id.authorizedKeys.map((k) => k.trim()).join('\n') + '\n')}`,
  ];
  if (opts.withClock) {
    // Taken as late as possible: the guest sets it the moment it reads this first line.
    const nowNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
    lines.unshift(`time ${nowNs / 1_000_000_000n} ${nowNs % 1_000_000_000n}`);
  }
  return lines.join('\n') + '\nend\n';
}
