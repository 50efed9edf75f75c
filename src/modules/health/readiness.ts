// What /readyz asks of this host: whether the database answers, and which optional
// capabilities there are (the Docker engine, VMs). A probe must answer quickly even when
// what it asks would keep retrying for longer (the database pool, a stuck engine).
import type Docker from 'dockerode';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { VmRuntimeProvider } from '../../infra/vm/runtime.js';
import { withTimeout } from '../../shared/time-limit.js';

const READINESS_TIMEOUT_MS = 2000;
const noAnswer = () => new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`);

export interface ReadinessProbe {
  /** Resolves when the database answers; rejects otherwise. */
  database(): Promise<unknown>;
  /** Optional capabilities of this host (ssh, docker, vm …), reported as they are. */
  capabilities(): Promise<Record<string, unknown>>;
}

/** Whether the engine answers, and its version. */
async function dockerStatus(docker: Docker): Promise<{ available: boolean; version?: string }> {
  try {
    const v = await withTimeout(docker.version(), READINESS_TIMEOUT_MS, noAnswer);
    return { available: true, version: v.Version };
  } catch {
    return { available: false };
  }
}

export function createReadinessProbe(deps: {
  prisma: Pick<PrismaClient, '$queryRaw'>;
  /** The engine's client, made on first use. */
  docker: () => Docker;
  vmRuntime: Pick<VmRuntimeProvider, 'status'>;
}): ReadinessProbe {
  return {
    database: () => withTimeout(deps.prisma.$queryRaw`SELECT 1`, READINESS_TIMEOUT_MS, noAnswer),
    capabilities: async () => ({ ssh: { client: 'ssh2' }, docker: await dockerStatus(deps.docker()), vm: deps.vmRuntime.status() }),
  };
}
