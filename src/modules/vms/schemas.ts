import { z } from 'zod';
import { timestamp, uuid } from '../../http/common-schemas.js';
import { machineStatus } from '../machines/schemas.js';

export const vmState = z.enum(['booting', 'running', 'stopped', 'failed']);

const EXAMPLE_ID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

export const createVmBody = z
  .object({
    image: z.string().min(1).max(64).meta({ description: 'the image, by name or id; it must be ready' }),
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be 1-64 lowercase letters, digits, ".", "_" or "-"')
      .optional()
      .meta({ description: 'also the name of its machine in the pool; default <image>-<6 hex digits>' }),
    cpus: z.number().int().min(1).max(64).optional(),
    memory_mb: z.number().int().min(128).max(1_048_576).optional(),
  })
  .strict()
  .meta({ examples: [{ image: 'devbox', name: 'devbox-1', cpus: 1, memory_mb: 512 }] });

export const vmAction = z.enum(['reset', 'start', 'stop', 'delete']);
const pendingAction = vmAction.nullable().meta({ description: "work another host asked of this VM's own host; done within seconds by that host's berth" });

export const vmAccepted = z
  .object({ id: uuid, name: z.string(), state: vmState, pending_action: pendingAction })
  .meta({ examples: [{ id: EXAMPLE_ID, name: 'devbox-1', state: 'booting', pending_action: null }] });

export const vm = z
  .object({
    id: uuid,
    name: z.string(),
    image: z.object({ id: uuid, name: z.string() }),
    state: vmState,
    state_reason: z.string().nullable(),
    cpus: z.number().int(),
    memory_mb: z.number().int(),
    ssh: z.object({ host: z.string(), port: z.number().int(), host_key_fingerprint: z.string() }),
    boot_ms: z.number().int().nullable().meta({ description: 'from the start of the last boot to SSH answering with the pinned host key' }),
    start_mode: z
      .enum(['restore', 'cold'])
      .nullable()
      .meta({ description: "how the last start went: `restore` = a clone of the image's template snapshot, `cold` = a full boot (no current snapshot yet, or its restore failed); null before the first start" }),
    machine_name: z.string().nullable(),
    machine_status: machineStatus.nullable(),
    node: z.string().meta({ description: 'the host whose QEMU runs it' }),
    node_status: z.enum(['up', 'down']).meta({ description: "whether that host's berth process is alive; while it is down, its VMs are not handed out" }),
    pending_action: pendingAction,
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({
    id: 'Vm',
    examples: [
      {
        id: EXAMPLE_ID,
        name: 'devbox-1',
        image: { id: '2b5e8c1d-3f4a-4b6c-8d9e-0a1b2c3d4e5f', name: 'devbox' },
        state: 'running',
        state_reason: null,
        cpus: 1,
        memory_mb: 512,
        ssh: { host: '127.0.0.1', port: 40111, host_key_fingerprint: 'SHA256:2bm3k1mEa8mXr0yX2i1mFv2cSx5n8P2Qe0bEw0mJx2Q' },
        boot_ms: 840,
        start_mode: 'restore',
        machine_name: 'devbox-1',
        machine_status: 'available',
        node: 'berth-host-1',
        node_status: 'up',
        pending_action: null,
        created_at: '2026-11-21T09:31:00.000Z',
        updated_at: '2026-11-21T09:31:04.000Z',
      },
    ],
  });

export const listVmsQuery = z.object({
  image: z.string().max(64).optional().meta({ description: 'image name or id' }),
  state: vmState.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(64).optional(),
});

export const poolBody = z
  .object({ size: z.number().int().min(0).max(64) })
  .strict()
  .meta({ examples: [{ size: 3 }] });

export const poolResponse = z
  .object({ image_id: uuid, image: z.string(), size: z.number().int(), vms: z.array(vm) })
  .meta({ examples: [{ image_id: '2b5e8c1d-3f4a-4b6c-8d9e-0a1b2c3d4e5f', image: 'devbox', size: 0, vms: [] }] });
