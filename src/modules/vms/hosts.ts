// VM hosts: every berth process says it is alive (a row in vm_hosts, refreshed by its VM
// watch); a host that stops saying so is down, and its VMs are unavailable until it is
// back. Work only a VM's own host can do (reset, start, stop, delete) is asked for by any
// process through the VM's row (pending_action) and done by the owner's next watch tick.
import type { PrismaClient } from '../../generated/prisma/client.js';

export function createVmHosts(deps: { prisma: PrismaClient; node: string; publicHost: string; downAfterMs: number }) {
  const { prisma, node, publicHost, downAfterMs } = deps;
  const startedAt = new Date();
  const upSince = () => new Date(Date.now() - downAfterMs);

  return {
    downAfterMs,
    /** A host whose last heartbeat is older than this is down. */
    upSince,

    /** This process is alive, and its VMs' SSH is reached at `publicHost`. */
    async heartbeat(): Promise<void> {
      const now = new Date();
      await prisma.vmHost.upsert({
        where: { name: node },
        create: { name: node, publicHost, startedAt, heartbeatAt: now },
        update: { publicHost, startedAt, heartbeatAt: now },
      });
    },

    /** The hosts whose process said it was alive lately. */
    async upHosts(): Promise<Set<string>> {
      const rows = await prisma.vmHost.findMany({ where: { heartbeatAt: { gte: upSince() } }, select: { name: true } });
      return new Set(rows.map((r) => r.name));
    },

    /** Machines of running VMs whose host is down: they must leave the pool. */
    async machinesOfDownHosts(): Promise<string[]> {
      const up = await this.upHosts();
      const vms = await prisma.vm.findMany({
        where: { machineId: { not: null }, node: { notIn: [...up] }, machine: { is: { status: 'available' } } },
        select: { machineId: true },
      });
      return vms.map((v) => v.machineId!);
    },
  };
}

export type VmHosts = ReturnType<typeof createVmHosts>;
