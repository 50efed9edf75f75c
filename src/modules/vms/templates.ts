// Which VM templates berth keeps made, and when: the policy over the mechanism of
// infra/vm/template.ts. Pools come back as clones, so every pooled image has a template for
// the default VM shape; a template goes stale with a new kernel, QEMU or image base, so
// they are checked every TEMPLATE_CHECK_MS and made again. An image that just became ready
// has its template made at once, after taking over those of the image whose base it
// shares. All of it is background work: nothing waits for a template (VMs boot cold
// meanwhile).
import type { EventBus } from '../../events/bus.js';
import type { Image } from '../../generated/prisma/client.js';
import { imageCommand } from '../../infra/vm/guest-init.js';
import type { Egress } from '../../infra/vm/isolation.js';
import type { VmRuntimeProvider } from '../../infra/vm/runtime.js';
import type { Templates } from '../../infra/vm/template.js';
import type { ImagesService } from '../images/service.js';

/** How often pooled images' VM templates are checked (made again when stale: a new kernel, QEMU, image). */
export const TEMPLATE_CHECK_MS = 60_000;

export interface VmTemplatesDeps {
  templates: Pick<Templates, 'ensure' | 'adopt' | 'sweep' | 'close'>;
  runtime: Pick<VmRuntimeProvider, 'status'>;
  images: Pick<ImagesService, 'find' | 'listPooled' | 'listIds'>;
  events: Pick<EventBus, 'on'>;
  /** Where an image's read-only base is. */
  imageBase(imageId: string): string;
  /** The VM shape pools are made of (BERTH_VM_DEFAULT_CPUS, _MEMORY_MB) and this host's egress policy. */
  shape: { cpus: number; memoryMb: number; egress: Egress };
  log: { warn(obj: object, msg: string): void };
}

export function createVmTemplates({ templates, runtime, images, events, imageBase, shape, log }: VmTemplatesDeps) {
  /** The image's template for the default VM shape, made in the background unless it is current. */
  const prepare = (image: Image) =>
    templates.ensure({
      imageId: image.id,
      base: imageBase(image.id),
      command: imageCommand(image.config),
      cpus: shape.cpus,
      memoryMb: shape.memoryMb,
      egress: shape.egress,
    });

  events.on('image.changed', async ({ imageId, status, sharesBaseWith }) => {
    if (status !== 'ready') return;
    // Deleted since (or no longer ready): nothing to make.
    const image = await images.find(imageId);
    if (image?.status !== 'ready') return;
    // Taking over is file work, making a boot: neither holds the build that raised this.
    void (sharesBaseWith ? templates.adopt(sharesBaseWith, image.id, imageBase(image.id)) : Promise.resolve())
      .catch((err: Error) => log.warn({ image: image.id, err: err.message }, 'could not take over VM templates'))
      .then(() => prepare(image));
  });

  return {
    /**
     * The vm-templates job's tick. First, from start-up on, what makings by a berth process
     * that is gone left behind (a template's QEMU waiting for ever, its work) is removed.
     * Then the templates of this host's pooled images are asked for, once its VM runtime is
     * ready (a host without VMs has nothing to make). Not waiting for the runtime: preparing
     * it (a first kernel fetch, the KVM probe) takes seconds, and closing waits for a tick;
     * `prepareVmRuntime` runs the job again when the runtime is ready.
     */
    async check(): Promise<void> {
      await templates.sweep(await images.listIds());
      if (runtime.status().accel === null) return;
      (await images.listPooled()).forEach(prepare);
    },

    /** Stops making templates (their QEMUs are stopped and their work removed). */
    close: () => templates.close(),
  };
}

export type VmTemplates = ReturnType<typeof createVmTemplates>;

/**
 * Prepares this host's VM runtime at start-up, without waiting for it, then checks the
 * templates at once (`checkTemplates`, null when templates are off); a host where VMs
 * cannot run says so.
 */
export function prepareVmRuntime(
  runtime: Pick<VmRuntimeProvider, 'get'>,
  checkTemplates: (() => Promise<unknown>) | null,
  log: { warn(obj: object, msg: string): void },
): void {
  void runtime.get().then(
    // A failed check is logged by the job runner and made again at its next tick.
    () => checkTemplates?.().catch(() => {}),
    (err: Error) => log.warn({ err: err.message }, 'VMs are unavailable on this host'),
  );
}
