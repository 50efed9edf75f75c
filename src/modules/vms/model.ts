// What the VM files share: the row as the service reads it, the limits, the request.
import { Prisma, type Image, type Machine, type Vm } from '../../generated/prisma/client.js';
import { AppError } from '../../errors/app-error.js';

export type VmRow = Vm & { image: Pick<Image, 'id' | 'name'>; machine: Machine | null };
export const withRefs = { image: { select: { id: true, name: true } }, machine: true } as const;

/** Where a VM's SSH is forwarded: this host's loopback. */
export const VM_HOST = '127.0.0.1';

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
