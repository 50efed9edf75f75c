// The vms module's view reads: every answer that shows a whole VM (a page of the list, one
// VM, an image's pool) reads it here, with one SELECT through the plain driver
// (infra/database.ts, SqlReads), its host's status included. One type for all of them,
// VmView, whose times are the ISO 8601 strings the answers show.
import type { Image, Machine, Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import type { SqlReads } from '../../infra/database.js';
import { pageOf } from '../../infra/paging.js';
import { sqlTime, whereAll, type Condition } from '../../infra/sql-where.js';

/** Whether the VM's host said lately that it is alive (hosts.ts). */
export type NodeStatus = 'up' | 'down';

/** A VM as the API shows it: no key, no pid, of its machine only what the answer shows (never its credential). */
export type VmView = Omit<Vm, 'createdAt' | 'updatedAt' | 'hostKeyPublic' | 'hostKeySealed' | 'rootKeyPublic' | 'pid' | 'pendingSince' | 'bootStartedAt'> & {
  image: Pick<Image, 'id' | 'name'>;
  machine: Pick<Machine, 'host' | 'name' | 'status'> | null;
  /** ISO 8601. */
  createdAt: string;
  updatedAt: string;
  nodeStatus: NodeStatus;
};

/**
 * The columns of a VmView with its image and machine flat (made into objects here: cheaper
 * than JSON_OBJECT, measured), and its host's status: `up` when the host's heartbeat is no
 * older than the one `?` (the first placeholder). STRAIGHT_JOIN reads the VMs in name order
 * from their index: MariaDB otherwise starts from images and sorts the join in a temporary table.
 */
export const VM_VIEW_SELECT = `SELECT v.id, v.name, v.image_id AS imageId, v.machine_id AS machineId, v.state, v.state_reason AS stateReason,
  v.node, v.cpus, v.memory_mb AS memoryMb, v.ssh_port AS sshPort, v.host_key_fingerprint AS hostKeyFingerprint, v.boot_ms AS bootMs, v.start_mode AS startMode,
  v.pending_action AS pendingAction, v.created_at AS createdAt, v.updated_at AS updatedAt, i.name AS imageName, m.host AS machineHost, m.name AS machineName,
  m.status AS machineStatus, IF(h.heartbeat_at >= ?, 'up', 'down') AS nodeStatus
  FROM vms v STRAIGHT_JOIN images i ON i.id = v.image_id LEFT JOIN machines m ON m.id = v.machine_id LEFT JOIN vm_hosts h ON h.name = v.node`;

type VmViewRow = Omit<VmView, 'image' | 'machine'> & {
  imageName: string;
  machineHost: string | null;
  machineName: string | null;
  machineStatus: Machine['status'] | null;
};

function vmView({ imageName, machineHost, machineName, machineStatus, ...vm }: VmViewRow): VmView {
  return {
    ...vm,
    image: { id: vm.imageId, name: imageName },
    machine: machineName === null ? null : { host: machineHost!, name: machineName, status: machineStatus! },
  };
}

/** The view reads; a host is up when its heartbeat is from `upSince()` or later. */
export function createVmViews(prisma: SqlReads, upSince: () => Date) {
  async function select(conditions: Condition[], order: string, values: unknown[] = []): Promise<VmView[]> {
    const where = whereAll(conditions);
    const rows = await prisma.$rows<VmViewRow>(`${VM_VIEW_SELECT} ${where.sql} ${order}`, [sqlTime(upSince()), ...where.values, ...values]);
    return rows.map(vmView);
  }

  return {
    /** A page of VMs by name. */
    async page(q: { image?: string; state?: Vm['state']; limit: number; cursor?: string }) {
      const conditions: Condition[] = [
        q.state ? ['v.state = ?', q.state] : null,
        q.image ? ['i.id = ? OR i.name = ?', q.image, q.image] : null,
        q.cursor ? ['v.name > ?', q.cursor] : null,
      ];
      return pageOf(await select(conditions, 'ORDER BY v.name LIMIT ?', [q.limit + 1]), q.limit, (v) => v.name);
    },

    async oneOrThrow(id: string): Promise<VmView> {
      const [vm] = await select([['v.id = ?', id]], '');
      if (!vm) throw new AppError('vm_not_found', 'no such VM');
      return vm;
    },

    /** The VMs of an image (its pool), by name. */
    ofImage: (imageId: string) => select([['v.image_id = ?', imageId]], 'ORDER BY v.name'),
  };
}

export type VmViews = ReturnType<typeof createVmViews>;
