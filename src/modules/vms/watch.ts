// The VM watch, a job of the runner (at start-up and every BERTH_VM_WATCH_SECONDS). It
// says this host is alive, does the work other hosts asked of this host's VMs, and takes
// the VMs of hosts that are down out of the pool. QEMU runs daemonized, so VMs outlive
// berth: the watch re-adopts boots nobody here follows (a restart), marks VMs whose QEMU
// is gone failed, lets booted VMs' machines into the pool, and keeps each running VM's
// console log within its bound.
import type { PrismaClient, VmAction } from '../../generated/prisma/client.js';
import { trimLog } from '../../infra/vm/console-log.js';
import { runningPid } from '../../infra/vm/qemu.js';
import { REASONS, type MachineState } from '../machines/state.js';
import type { BootFollower } from './follow.js';
import type { VmHosts } from './hosts.js';
import type { Launcher } from './launch.js';
import { withRefs, type VmRow, type VmsLog } from './model.js';

/** A launch not recorded with a QEMU pid within this time was interrupted. */
const LAUNCH_GRACE_MS = 60_000;
/** A VM's console log on disk is cut back to its newest half past this size (the API serves the last 256 KiB). */
export const CONSOLE_MAX_BYTES = 1024 * 1024;

export function createVmWatch(deps: {
  prisma: PrismaClient;
  state: Pick<MachineState, 'returnVm' | 'vmHostDown'>;
  hosts: VmHosts;
  /** Does on this host what another host asked for (its machine was taken out of the pool already). */
  perform(vm: VmRow, action: VmAction): Promise<unknown>;
  follower: Pick<BootFollower, 'follow' | 'markFailed' | 'consoleTail' | 'consolePath'>;
  launcher: Pick<Launcher, 'isStarting' | 'inBackground'>;
  /** This host: the watch looks after its VMs only. */
  node: string;
  vmDir(id: string): string;
  log: VmsLog;
}) {
  const { prisma, state, hosts, perform, follower, launcher, node, vmDir, log } = deps;

  /** Work other hosts asked of this host's VMs: each taken by a conditional update, then done. */
  async function doPendingWork(): Promise<void> {
    const pending = await prisma.vm.findMany({ where: { node, pendingAction: { not: null } }, include: withRefs });
    for (const vm of pending) {
      const { count } = await prisma.vm.updateMany({
        where: { id: vm.id, pendingAction: vm.pendingAction, pendingSince: vm.pendingSince },
        data: { pendingAction: null, pendingSince: null },
      });
      if (count === 0) continue;
      await perform(vm, vm.pendingAction!).catch((err: Error) =>
        log.warn({ vm: vm.id, action: vm.pendingAction, err: err.message }, 'could not do what another host asked of a VM'),
      );
    }
  }

  return async function watch(): Promise<void> {
    await hosts.heartbeat();
    await doPendingWork();
    const down = await state.vmHostDown(await hosts.machinesOfDownHosts());
    if (down) log.warn({ machines: down }, 'VMs of a host that is down left the pool');
    const vms = await prisma.vm.findMany({ where: { node, state: { in: ['booting', 'running'] } }, include: withRefs });
    for (const vm of vms) {
      if (launcher.isStarting(vm.id)) continue;
      const pid = await runningPid(vmDir(vm.id));
      if (pid === null) {
        const launchedRecently = vm.pid === null && vm.bootStartedAt && Date.now() - vm.bootStartedAt.getTime() < LAUNCH_GRACE_MS;
        if (!launchedRecently) {
          await follower.markFailed(vm, vm.pid === null ? 'the boot was interrupted (berth stopped)' : `QEMU exited${await follower.consoleTail(vm.id)}`);
        }
        continue;
      }
      // The guest writes its console as fast as it likes; only its newest part is kept.
      await trimLog(follower.consolePath(vm.id), CONSOLE_MAX_BYTES);
      if (vm.state === 'booting') {
        if (vm.pid !== pid) await prisma.vm.updateMany({ where: { id: vm.id, bootStartedAt: vm.bootStartedAt }, data: { pid } });
        launcher.inBackground(follower.follow(vm).catch((err: unknown) => log.error({ err, vm: vm.id }, 'following a boot failed')));
      } else if (vm.machineId && (vm.machine?.statusReason === REASONS.vmBooting || vm.machine?.statusReason === REASONS.vmHostDown)) {
        await state.returnVm(vm.machineId);
      }
    }
  };
}
