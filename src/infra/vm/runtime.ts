// What this host boots VMs with: the kernel and initramfs, QEMU's version, the accelerator,
// and the rule that keeps guests off this host (when they may reach the internet). Prepared
// once per process in the background (the kernel is cached on disk; the KVM probe takes
// up to 5 s) and shared by every boot. A failure is remembered only until the next ask,
// so a fixed host (apt reachable again, QEMU installed) recovers without a restart.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { prepareBootArtifacts, type BootArtifacts } from './boot-artifacts.js';
import { enforceEgress, type Egress } from './isolation.js';
import { probeKvm, type Accel } from './qemu.js';

const run = promisify(execFile);

export interface VmRuntime extends BootArtifacts {
  accel: Accel;
  /** QEMU's version line and its binary's size and time: a snapshot restores only into the QEMU that made it. */
  qemu: string;
}

async function qemuIdentity(): Promise<string> {
  const { stdout } = await run('qemu-system-x86_64', ['--version']);
  const binary = (await run('bash', ['-c', 'command -v qemu-system-x86_64'])).stdout.trim();
  const st = await fs.stat(await fs.realpath(binary));
  return `${stdout.split('\n')[0]!.trim()} ${st.size} ${st.mtimeMs}`;
}

export type AccelSetting = 'auto' | Accel;

export function createVmRuntime(opts: { cacheDir: string; accel: AccelSetting; egress: Egress }) {
  let pending: Promise<VmRuntime> | null = null;
  let ready: VmRuntime | null = null;
  let failure: string | null = null;

  const get = (): Promise<VmRuntime> => {
    pending ??= (async () => {
      await enforceEgress(opts.egress);
      const artifacts = await prepareBootArtifacts(opts.cacheDir);
      const accel = opts.accel === 'auto' ? ((await probeKvm(artifacts.kernel)) ? 'kvm' : 'tcg') : opts.accel;
      ready = { ...artifacts, accel, qemu: await qemuIdentity() };
      failure = null;
      return ready;
    })().catch((err: Error) => {
      failure = err.message;
      pending = null;
      throw err;
    });
    return pending;
  };

  return {
    get,
    /** For /readyz: the accelerator once known; null while preparing or when VMs cannot run. */
    status: () => ({ accel: ready?.accel ?? null, ...(failure && !ready && { error: failure.slice(0, 300) }) }),
  };
}

export type VmRuntimeProvider = ReturnType<typeof createVmRuntime>;
