// What this host boots VMs with: the kernel and initramfs, the accelerator, and the rule
// that keeps guests off this host (when they may reach the internet). Prepared
// once per process in the background (the kernel is cached on disk; the KVM probe takes
// up to 5 s) and shared by every boot. A failure is remembered only until the next ask,
// so a fixed host (apt reachable again, QEMU installed) recovers without a restart.
import { prepareBootArtifacts, type BootArtifacts } from './boot-artifacts.js';
import { enforceEgress, type Egress } from './isolation.js';
import { probeKvm, type Accel } from './qemu.js';

export interface VmRuntime extends BootArtifacts {
  accel: Accel;
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
      ready = { ...artifacts, accel };
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
