// An image's pool: PUT /v1/images/{id}/pool {size} keeps exactly `size` VMs of the image,
// booting more or deleting unreserved ones (failed, stopped and booting ones first), and
// brings back members that are down: the pool means running VMs. One resize of an image
// at a time, in every process (a row lock on the image).
import type { EventBus } from '../../events/bus.js';
import type { Image, PrismaClient, Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import { REASONS, type MachineState } from '../machines/state.js';
import type { Launcher } from './launch.js';
import { imageGone, withRefs, type VmRow, type VmsLog } from './model.js';
import type { VmView, VmViews } from './queries.js';
import type { VmRecords } from './records.js';

const REMOVAL_ORDER: Record<Vm['state'], number> = { failed: 0, stopped: 1, booting: 2, running: 3 };

export function createPoolSizer(deps: {
  prisma: PrismaClient;
  state: Pick<MachineState, 'withdrawVm'>;
  records: Pick<VmRecords, 'record'>;
  views: Pick<VmViews, 'ofImage'>;
  launcher: Pick<Launcher, 'launch' | 'requireRuntime'>;
  /** Brings back a member that is down (here, or through its own host). */
  restart(vm: VmRow): Promise<unknown>;
  /** Deletes a VM whose machine has left the pool (here, or through its own host). */
  remove(vm: VmRow): Promise<unknown>;
  events: Pick<EventBus, 'afterCommit'>;
  log: VmsLog;
}) {
  const { prisma, state, records, views, launcher, restart, remove, events, log } = deps;

  return async function resizePool(imageId: string, size: number): Promise<{ image: Image; vms: VmView[] }> {
    const image = await prisma.image.findUnique({ where: { id: imageId } });
    if (!image) throw new AppError('image_not_found', 'no such image');
    if (size > 0 && image.status !== 'ready') throw new AppError('image_not_ready', `the image ${image.name} is ${image.status}`);
    const { created, removed } = await events
      .afterCommit((record) => prisma.$transaction(async (tx) => {
        await tx.$queryRaw`SELECT id FROM images WHERE id = ${imageId} FOR UPDATE`;
        const vms = await tx.vm.findMany({ where: { imageId }, include: withRefs });
        const removed: VmRow[] = [];
        const created: VmRow[] = [];
        if (vms.length > size) {
          const free = vms
            .filter((v) => !v.machine?.reservationId && v.machine?.status !== 'reserved')
            .sort((a, b) => REMOVAL_ORDER[a.state] - REMOVAL_ORDER[b.state]);
          const need = vms.length - size;
          if (free.length < need) {
            throw new AppError('pool_reserved', `${vms.length - free.length} VM(s) of ${image.name} are reserved; the pool cannot shrink below that`, {
              reserved: vms.length - free.length,
            });
          }
          for (const v of free.slice(0, need)) {
            if (v.machineId && !(await state.withdrawVm(v.machineId, REASONS.vmBeingDeleted, { tx, record }))) {
              throw new AppError('pool_reserved', `${v.name} was reserved meanwhile; try again`);
            }
            removed.push(v);
          }
        }
        for (let i = vms.length; i < size; i++) created.push(await records.record({ tx, record }, image, {}));
        await tx.image.update({ where: { id: imageId }, data: { poolSize: size } });
        return { created, removed };
      }))
      .catch((err: unknown) => {
        throw imageGone(err);
      });
    await Promise.all(removed.map((v) => remove(v)));
    // The image was read ready, and the runtime is read once for all of them.
    const known = created.length ? { image, runtime: await launcher.requireRuntime() } : undefined;
    for (const vm of created) await launcher.launch(vm, { discard: true, from: ['stopped'] }, known);
    const members = await prisma.vm.findMany({ where: { imageId }, include: withRefs });
    for (const v of members) {
      if ((v.state === 'failed' || v.state === 'stopped') && !v.pendingAction && !v.machine?.reservationId) {
        // One that cannot come back now (reserved meanwhile, QEMU refusing) stays as it is;
        // the resize itself has done its part.
        await restart(v).catch((err: Error) => log.warn({ vm: v.id, err: err.message }, 'could not restart a pool member'));
      }
    }
    return { image: await prisma.image.findUniqueOrThrow({ where: { id: imageId } }), vms: await views.ofImage(imageId) };
  };
}
