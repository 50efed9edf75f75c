// A clone: a VM restored from a template (template.ts) instead of booted. Its RAM is the
// template's memory file mapped copy-on-write (share=off: nothing is copied, nothing is
// written back); its disk is its own copy of the template's small overlay (the base under
// it is the image's, read-only); its port and identity are its own. The guest resumes in
// its init's read on the identity channel: berth sends the identity (identity.ts), the
// guest answers once it is applied, and only then is the VM's port forwarded to its sshd.
import fs from 'node:fs/promises';
import path from 'node:path';
import type net from 'node:net';
import readline from 'node:readline';
import { GUEST_SAYS } from './guest-init.js';
import { identityMessage } from './identity.js';
import { forwardSsh, launchQemu, STATE_FD, stopVm, VM_FILES } from './machine.js';
import { connectQmp } from './qmp.js';
import { OVERLAY, type VmSpec } from './qemu.js';
import type { Template } from './template.js';
import { boundLines, connectUnix } from './unix-socket.js';
import { withTimeout } from '../../shared/time-limit.js';

export class RestoreError extends Error {
  override name = 'RestoreError';
  constructor(
    message: string,
    /**
     * The template itself is at fault (its state does not load, its guest cannot take an
     * identity): it must be made again. Otherwise (a timeout on a busy host, a port taken
     * meanwhile) the next clone may well succeed.
     */
    readonly templateBroken = false,
  ) {
    super(message);
  }
}

/** Where a restore's time went, in ms. */
export interface RestorePhases {
  /** Copy of the overlay, QEMU started (daemonized), its sockets connected. */
  launch: number;
  /** The device state loaded and the guest running again. */
  restore: number;
  /** The identity sent, and applied by the guest (RNG reseeded, keys written, clock set). */
  identity: number;
  /** sshd listening (it runs in the template already) and the VM's port forwarded to it. */
  sshd: number;
}

/** Lines the guest writes on the channel until `onLine` says done (or throws: a failure). */
function guestLines(channel: net.Socket, onLine: (line: string) => boolean): Promise<void> {
  boundLines(channel);
  return new Promise((resolve, reject) => {
    readline
      .createInterface({ input: channel, crlfDelay: Infinity })
      .on('line', (line) => {
        try {
          if (line.trim() && onLine(line.trim())) resolve();
        } catch (err) {
          reject(err);
        }
      })
      // readline passes its input's errors on (QEMU gone: ECONNRESET); the channel's 'close' below says so.
      .on('error', () => {});
    channel.on('close', () => reject(new RestoreError('the identity channel closed (QEMU exited)')));
  });
}

const tookTooLong = (what: string, ms: number) => () => new RestoreError(`${what} took longer than ${Math.round(ms / 1000)} s`);

/**
 * Restores `spec`'s VM from `template`, gives it `spec`'s identity and answers once its sshd
 * listens. On any failure QEMU is stopped, the overlay removed, and a RestoreError thrown.
 */
export async function restoreVm(spec: VmSpec, template: Template, timeoutMs: number): Promise<{ pid: number; phases: RestorePhases }> {
  const started = performance.now();
  const overlay = path.join(spec.dir, OVERLAY);
  let qmp: Awaited<ReturnType<typeof connectQmp>> | null = null;
  let channel: net.Socket | null = null;
  const handed: fs.FileHandle[] = [];
  try {
    await fs.mkdir(spec.dir, { recursive: true, mode: 0o700 });
    await fs.copyFile(template.overlay, overlay);
    await fs.chmod(overlay, 0o600);
    // Handed in open: QEMU may run as an unprivileged user by the time it reads them.
    const open = async (file: string, flags: string) => {
      const handle = await fs.open(file, flags);
      handed.push(handle);
      return handle;
    };
    const [state, readWrite, readOnly] = [await open(template.state, 'r'), await open(overlay, 'r+'), await open(overlay, 'r')];
    const pid = await launchQemu(
      {
        ...spec,
        disk: overlay,
        seed: template.seed,
        // Nobody reaches the guest's sshd before it has its identity: forwarded below.
        sshPort: null,
        memory: { file: template.memory, shared: false },
        incoming: true,
      },
      { handOver: { state: state.fd, disk: { readWrite: readWrite.fd, readOnly: readOnly.fd } } },
    );
    // QEMU has its own descriptors of them now.
    for (const h of handed.splice(0)) await h.close();
    qmp = await connectQmp(spec.dir, VM_FILES.monitor);
    // Before the state loads: the guest then finds its channel's host end connected, as the template did.
    channel = await connectUnix(spec.dir, VM_FILES.identity, 5000);
    const launched = performance.now();

    await qmp.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'x-ignore-shared', state: true }, { capability: 'events', state: true }],
    });
    await qmp.execute('migrate-incoming', { uri: `fd:${STATE_FD}` });
    const q = qmp;
    await withTimeout(
      (async () => {
        for (;;) {
          // QEMU exits when the state does not load: its monitor closing says so too. (A
          // slow load is withTimeout's to report, as a timeout: hence the longer wait here.)
          const { status } = (await q.event('MIGRATION', timeoutMs + 1000).catch((err: Error) => {
            throw new RestoreError(`QEMU could not load the snapshot: ${err.message}`, true);
          })) as { status?: string };
          if (status === 'completed') return;
          if (status === 'failed') throw new RestoreError('QEMU could not load the snapshot', true);
        }
      })(),
      timeoutMs,
      tookTooLong('loading the snapshot', timeoutMs),
    );
    // The template was stopped when saved, so its clone waits to be told to run.
    await qmp.execute('cont');
    const restored = performance.now();

    let applied = restored;
    const answered = guestLines(channel, (line) => {
      if (line === GUEST_SAYS.identity) applied = performance.now();
      if (line.startsWith(GUEST_SAYS.sshdFailed) || line.startsWith(GUEST_SAYS.badIdentity)) throw new RestoreError(`the guest said: ${line.slice(0, 200)}`, true);
      return line === GUEST_SAYS.sshd;
    });
    channel.write(identityMessage({ hostname: spec.name, hostKey: spec.hostKey, authorizedKeys: spec.authorizedKeys }, { withClock: true }));
    await withTimeout(answered, timeoutMs, tookTooLong('applying the identity', timeoutMs));
    await forwardSsh(qmp, spec.sshBind, spec.sshPort);
    const done = performance.now();
    return {
      pid,
      phases: { launch: launched - started, restore: restored - launched, identity: applied - restored, sshd: done - applied },
    };
  } catch (err) {
    await stopVm(spec.dir, 0);
    await fs.rm(overlay, { force: true });
    throw err instanceof RestoreError ? err : new RestoreError((err as Error).message);
  } finally {
    for (const h of handed) await h.close();
    qmp?.close();
    channel?.destroy();
  }
}
