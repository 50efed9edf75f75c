// What the VM files share: the row as the service reads it, the limits, the request.
import { Prisma, type Image, type Machine, type Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';

export type VmRow = Vm & { image: Pick<Image, 'id' | 'name'>; machine: Machine | null };
export const withRefs = { image: { select: { id: true, name: true } }, machine: true } as const;

/** How this host's VMs are reached over the network (BERTH_VM_BIND, _PUBLIC_HOST, _PORTS). */
export interface VmNetwork {
  bind: string;
  publicHost: string;
  ports: [number, number];
  egress: 'none' | 'internet';
}

/** Where berth itself connects to a VM of this host: its bind address, or loopback when that is every address. */
export const localAddress = (bind: string) => (bind === '0.0.0.0' ? '127.0.0.1' : bind);

export interface VmLimits {
  defaultCpus: number;
  defaultMemoryMb: number;
  maxCpus: number;
  maxMemoryMb: number;
  bootTimeoutMs: number;
}

export interface CreateVmInput {
  image: string;
  name?: string;
  cpus?: number;
  memory_mb?: number;
}

export interface VmsLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The image was deleted under a request that was adding VMs to it. */
export const imageGone = (err: unknown) =>
  err instanceof Prisma.PrismaClientKnownRequestError && ['P2003', 'P2025'].includes(err.code)
    ? new AppError('image_not_ready', 'the image was deleted meanwhile')
    : err;
