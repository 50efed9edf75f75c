// A VM's records: its row and its machine, its keys (a host key pinned by berth, a root key
// sealed as the machine's credential) and its forwarded port. Nothing here starts QEMU.
import { randomBytes } from 'node:crypto';
import type { Image, Machine, Prisma, Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import type { Database } from '../../infra/database.js';
import { pageOf } from '../../infra/paging.js';
import { freePortIn } from '../../infra/ports.js';
import { sqlTime, whereAll } from '../../infra/sql-where.js';
import type { Timestamp } from '../../shared/timestamps.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { generateSshKeyPair, normalizeKeyLine, parseHostKey } from '../../infra/ssh.js';
import { REASONS } from '../machines/state.js';
import { withRefs, type CreateVmInput, type VmLimits, type VmNetwork, type VmRow } from './model.js';

/**
 * A VM as the API shows it: a VmRow, or what the list reads (times as ISO 8601 strings, and
 * of its machine only what the answer shows, never its credential).
 */
export type VmView = Omit<Vm, 'createdAt' | 'updatedAt' | 'hostKeyPublic' | 'hostKeySealed' | 'rootKeyPublic' | 'pid' | 'pendingSince' | 'bootStartedAt'> & {
  image: Pick<Image, 'id' | 'name'>;
  machine: Pick<Machine, 'host' | 'name' | 'status'> | null;
  createdAt: Timestamp;
  updatedAt: Timestamp;
};

/** Whether the VM's host said lately that it is alive (hosts.ts). */
export type NodeStatus = 'up' | 'down';

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
type VmListRow = Omit<VmView, 'image' | 'machine'> & {
  nodeStatus: NodeStatus;
  imageName: string;
  machineHost: string | null;
  machineName: string | null;
  machineStatus: Machine['status'] | null;
};

function vmView({ imageName, machineHost, machineName, machineStatus, ...vm }: VmListRow): VmView & { nodeStatus: NodeStatus } {
  return {
    ...vm,
    image: { id: vm.imageId, name: imageName },
    machine: machineName === null ? null : { host: machineHost!, name: machineName, status: machineStatus! },
  };
}

export function createVmRecords(deps: { prisma: Database; secretBox: SecretBox; node: string; limits: VmLimits; network: VmNetwork }) {
  const { prisma, secretBox, node, limits, network } = deps;

  /** A port of BERTH_VM_PORTS that no VM of this host has recorded (stopped VMs keep theirs) and that is free now. */
  async function allocatePort(tx: Prisma.TransactionClient): Promise<number> {
    const taken = new Set((await tx.vm.findMany({ where: { node }, select: { sshPort: true } })).map((v) => v.sshPort));
    const port = await freePortIn(network.ports, network.bind, taken);
    if (port === null) throw new AppError('vm_ports_exhausted', `every port of ${network.ports.join('-')} is taken on ${node}`);
    return port;
  }

  return {
    async get(id: string): Promise<VmRow> {
      const vm = await prisma.vm.findUnique({ where: { id }, include: withRefs });
      if (!vm) throw new AppError('vm_not_found', 'no such VM');
      return vm;
    },

    /** A page of VMs, each with its host's status: up when its heartbeat is from `upSince` or later. */
    async list(q: { image?: string; state?: Vm['state']; limit: number; cursor?: string }, upSince: Date) {
      const where = whereAll([
        q.state ? ['v.state = ?', q.state] : null,
        q.image ? ['i.id = ? OR i.name = ?', q.image, q.image] : null,
        q.cursor ? ['v.name > ?', q.cursor] : null,
      ]);
      const rows = await prisma.$rows<VmListRow>(`${VM_VIEW_SELECT} ${where.sql} ORDER BY v.name LIMIT ?`, [
        sqlTime(upSince),
        ...where.values,
        q.limit + 1,
      ]);
      return pageOf(rows.map(vmView), q.limit, (v) => v.name);
    },

    /** VMs belong to the host whose QEMU runs them: only processes there touch them. */
    ownedHere(vm: Vm): void {
      if (vm.node !== node) throw new AppError('vm_on_other_host', `${vm.name} runs on ${vm.node}; ask a berth process on that host`);
    },

    async readyImage(ref: string): Promise<Image> {
      const image = await prisma.image.findFirst({ where: { OR: [{ id: ref }, { name: ref }] } });
      if (!image) throw new AppError('image_not_found', `no image ${ref}`);
      if (image.status !== 'ready') throw new AppError('image_not_ready', `the image ${image.name} is ${image.status}; VMs boot only from a ready image`);
      return image;
    },

    checkLimits(input: { cpus?: number; memory_mb?: number }): void {
      if (input.cpus !== undefined && input.cpus > limits.maxCpus) {
        throw new AppError('vm_limits_exceeded', `cpus must be at most ${limits.maxCpus} on this host`);
      }
      if (input.memory_mb !== undefined && input.memory_mb > limits.maxMemoryMb) {
        throw new AppError('vm_limits_exceeded', `memory_mb must be at most ${limits.maxMemoryMb} on this host`);
      }
    },

    /** Records a new VM and its machine (not yet booted); its id. */
    async record(tx: Prisma.TransactionClient, image: Image, input: Omit<CreateVmInput, 'image'>): Promise<string> {
      const name = input.name ?? `${image.name.slice(0, 56)}-${randomBytes(3).toString('hex')}`;
      if (await tx.machine.findUnique({ where: { name }, select: { id: true } })) {
        throw new AppError('vm_exists', `a machine or VM named ${name} exists`);
      }
      const hostKey = generateSshKeyPair();
      const rootKey = generateSshKeyPair(`berth root key for ${name}`);
      const fingerprint = parseHostKey(hostKey.public)!;
      const sshPort = await allocatePort(tx);
      const machine = await tx.machine.create({
        data: {
          name,
          host: network.publicHost,
          port: sshPort,
          username: 'root',
          credentialKind: 'private_key',
          credential: secretBox.seal(rootKey.private),
          hostKeyFingerprint: fingerprint,
          hostKey: normalizeKeyLine(hostKey.public),
          type: 'vm',
          tags: { image: image.name },
          // The VM is reset after every reservation: sudo cannot leave anything behind.
          allowSudo: true,
          status: 'offline',
          statusReason: REASONS.vmBooting,
        },
      });
      const vm = await tx.vm.create({
        data: {
          name,
          imageId: image.id,
          machineId: machine.id,
          state: 'stopped',
          node,
          cpus: input.cpus ?? limits.defaultCpus,
          memoryMb: input.memory_mb ?? limits.defaultMemoryMb,
          sshPort,
          hostKeyFingerprint: fingerprint,
          hostKeyPublic: hostKey.public.trim(),
          hostKeySealed: secretBox.seal(hostKey.private),
          rootKeyPublic: rootKey.public.trim(),
        },
      });
      return vm.id;
    },

    /** Gives the VM a new SSH host key, pinned on its machine. */
    async newHostKey(vm: Pick<Vm, 'id' | 'machineId'>): Promise<Pick<Vm, 'hostKeyFingerprint' | 'hostKeyPublic' | 'hostKeySealed'>> {
      const key = generateSshKeyPair();
      const fields = { hostKeyFingerprint: parseHostKey(key.public)!, hostKeyPublic: key.public.trim(), hostKeySealed: secretBox.seal(key.private) };
      await prisma.vm.update({ where: { id: vm.id }, data: fields });
      if (vm.machineId) {
        await prisma.machine.update({ where: { id: vm.machineId }, data: { hostKeyFingerprint: fields.hostKeyFingerprint, hostKey: normalizeKeyLine(key.public) } });
      }
      return fields;
    },

    /** Moves the VM to another free port (its old one was taken while it was stopped); the new port. */
    async newPort(vm: Pick<Vm, 'id' | 'machineId'>): Promise<number> {
      const sshPort = await prisma.$transaction((tx) => allocatePort(tx));
      await prisma.vm.update({ where: { id: vm.id }, data: { sshPort } });
      if (vm.machineId) await prisma.machine.update({ where: { id: vm.machineId }, data: { port: sshPort } });
      return sshPort;
    },
  };
}

export type VmRecords = ReturnType<typeof createVmRecords>;
