// How a VM starts: restored from its image's template when there is a current one, else
// booted cold (qemu.ts) while the template is made in the background. A restore that fails
// falls back to a cold boot too; a template at fault is thrown away to be made again. The
// caller learns which it was, and why not a restore.
import { RestoreError, restoreVm, type RestorePhases } from './clone.js';
import { bootVm, hasOverlay, type VmSpec } from './qemu.js';
import type { Templates, TemplateSource } from './template.js';

export type StartMode = 'restore' | 'cold';

export interface Started {
  pid: number;
  mode: StartMode;
  /** Why it was not restored (cold boots only). */
  reason?: string;
  /** Restores only. */
  phases?: RestorePhases;
}

export interface StartDeps {
  /** Null when snapshots are off: every start is a cold boot. */
  templates: Templates | null;
  /** How long a restore may take before it counts as failed (then the VM boots cold). */
  restoreTimeoutMs?: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** A VM to start: its spec, and the image it is of (a template is per image and shape). */
export type StartSpec = VmSpec & { imageId: string };

/** A restore normally takes well under a second; one this slow is treated as broken. */
const RESTORE_TIMEOUT_MS = 20_000;

/** Starts `spec`'s VM, as a clone of its image's template when there is a current one. */
export async function startVm(spec: StartSpec, deps: StartDeps): Promise<Started> {
  const source: TemplateSource = {
    imageId: spec.imageId,
    base: spec.base,
    command: spec.command ?? null,
    cpus: spec.cpus,
    memoryMb: spec.memoryMb,
    egress: spec.egress,
  };
  const cold = async (reason: string): Promise<Started> => {
    deps.log.info({ vm: spec.name, reason }, 'booting a VM cold');
    return { pid: await bootVm(spec), mode: 'cold', reason };
  };
  // A VM started again after a stop keeps what it wrote: only a boot can use that disk.
  if (await hasOverlay(spec.dir)) return cold('it keeps its writable layer (started again after a stop)');
  const templates = deps.templates;
  if (!templates) return cold('snapshots are off (BERTH_VM_SNAPSHOTS)');
  const found = await templates.lookup(source);
  if (!found.template) {
    templates.ensure(source);
    return cold(found.reason);
  }
  try {
    const { pid, phases } = await restoreVm(spec, found.template, deps.restoreTimeoutMs ?? RESTORE_TIMEOUT_MS);
    deps.log.info({ vm: spec.name, phases: roundAll(phases) }, 'restored a VM from its template');
    return { pid, mode: 'restore', phases };
  } catch (err) {
    const reason = `restoring its snapshot failed: ${(err as Error).message}`;
    if (err instanceof RestoreError && err.templateBroken) {
      deps.log.warn({ vm: spec.name, image: source.imageId, reason }, 'a VM restore failed; its template will be made again');
      await templates.discard(found.template);
      templates.ensure(source);
    } else {
      deps.log.warn({ vm: spec.name, image: source.imageId, reason }, 'a VM restore failed; its template is kept');
    }
    return cold(reason);
  }
}

const roundAll = (phases: RestorePhases) => Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(v)]));
