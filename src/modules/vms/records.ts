// A VM's records: its row and its machine, its keys (a host key pinned by berth, a root key
// sealed as the machine's credential) and its forwarded port. Nothing here starts QEMU. The
// views the answers show are read in queries.ts.
import { randomBytes } from 'node:crypto';
import type { Image, Prisma, PrismaClient, Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';
import { freePortIn } from '../../infra/ports.js';
import type { SecretBox } from '../../infra/secret-box.js';
import { generateSshKeyPair, normalizeKeyLine, parseHostKey } from '../../infra/ssh.js';
import type { InTransaction } from '../../events/bus.js';
import { REASONS } from '../machines/state.js';
import { withRefs, type CreateVmInput, type VmLimits, type VmNetwork, type VmRow } from './model.js';

export function createVmRecords(deps: { prisma: PrismaClient; secretBox: SecretBox; node: string; limits: VmLimits; network: VmNetwork }) {
  const { prisma, secretBox, node, limits, network } = deps;

  /** A port of BERTH_VM_PORTS that no VM of this host has recorded (stopped VMs keep theirs) and that is free now. */
  async function allocatePort(tx: Prisma.TransactionClient): Promise<number> {
    const taken = new Set((await tx.vm.findMany({ where: { node }, select: { sshPort: true } })).map((v) => v.sshPort));
    const port = await freePortIn(network.ports, network.bind, taken);
    if (port === null) throw new AppError('vm_ports_exhausted', `every port of ${network.ports.join('-')} is taken on ${node}`);
    return port;
  }

  return {
    async getOrThrow(id: string): Promise<VmRow> {
      const vm = await prisma.vm.findUnique({ where: { id }, include: withRefs });
      if (!vm) throw new AppError('vm_not_found', 'no such VM');
      return vm;
    },

    /** VMs belong to the host whose QEMU runs them: only processes there touch them. */
    ownedHere(vm: Vm): void {
      if (vm.node !== node) throw new AppError('vm_on_other_host', `${vm.name} runs on ${vm.node}; ask a berth process on that host`);
    },

    async readyImageOrThrow(ref: string): Promise<Image> {
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

    /** Records a new VM and its machine (not yet booted) in `within`, and says so once it commits; the new VM. */
    async record({ tx, record }: InTransaction, image: Image, input: Omit<CreateVmInput, 'image'>): Promise<VmRow> {
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
      record('vm.changed', { vmId: vm.id, machineId: machine.id, name, change: 'created', state: vm.state });
      return { ...vm, image: { id: image.id, name: image.name }, machine };
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
