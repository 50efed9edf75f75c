import { z } from 'zod';
import { timestamp, uuid } from '../../http/common-schemas.js';
import { sshHost } from '../../shared/hosts.js';

export const machineStatus = z.enum(['available', 'reserved', 'maintenance', 'offline', 'needs_reprovision']).meta({
  description:
    'needs_reprovision: released by a reservation whose account had sudo; out of the pool until an admin reprovisions it ' +
    '(POST /v1/machines/{name}/reprovisioned) or the configured reprovision command succeeds',
});
export const machineName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit')
  .meta({ examples: ['gpu-01'] });
const hostName = sshHost.meta({ examples: ['10.0.0.21'] });
const loginUser = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a Unix user name').meta({ examples: ['root'] });
const machineType = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'must be 1-32 lowercase letters, digits, "_" or "-"');
export const tagKey = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'tag keys are 1-64 letters, digits, ".", "_" or "-"');
/** Tags a machine may carry, and a reservation may ask for (each one a condition of its query). */
export const MAX_TAGS = 32;
/** Tag filters in one list query. */
const MAX_TAG_FILTERS = 16;
export const tags = z
  .record(tagKey, z.string().max(128))
  .refine((t) => Object.keys(t).length <= MAX_TAGS, `at most ${MAX_TAGS} tags`)
  .meta({ examples: [{ gpu: 'a100', rack: 'r2' }] });
const hostKey = z
  .string()
  .max(8192)
  .meta({ description: 'the SSH host key to pin: an OpenSSH public key line or a SHA256:… fingerprint' });
/** Sealed, a secret grows by 29 bytes; the column holds 8192. */
const SECRET_MAX_BYTES = 8000;
const secret = z
  .string()
  .min(1)
  .max(SECRET_MAX_BYTES)
  .refine((v) => Buffer.byteLength(v, 'utf8') <= SECRET_MAX_BYTES, `must be at most ${SECRET_MAX_BYTES} bytes`)
  .meta({ description: `at most ${SECRET_MAX_BYTES} bytes (UTF-8)` });

/** What giving tenants sudo on a machine means; said wherever it can be turned on. */
export const SUDO_WARNING =
  'Reservation accounts on this machine get passwordless sudo: each tenant is root and can change anything on it ' +
  '(install a PAM module that records passwords, add keys for root, replace sshd). A machine berth does not reset is ' +
  'therefore released to needs_reprovision, out of the pool until it is reinstalled and an admin (or the reprovision command) clears it.';
const allowSudo = z.boolean().meta({ description: `give reservation accounts passwordless sudo (default false). ${SUDO_WARNING}` });
const keepPassword = z.boolean().meta({
  description:
    'With a password: keep logging in with it. Without (the default) berth installs an Ed25519 key it generates for this machine ' +
    "into the login user's ~/.ssh/authorized_keys on its first login, checks that it works and forgets the password: a password " +
    'login shows the password to the machine (its PAM stack), where anyone who was root can record it.',
});

/** Credentials: exactly one of password and private_key. */
const oneCredential = <T extends { password?: string; private_key?: string }>(b: T) => Boolean(b.password) !== Boolean(b.private_key);

export const machineInput = z.object({
  name: machineName,
  host: hostName,
  // A number, as the document says: a string ("22") is refused, not converted.
  port: z.number().int().min(1).max(65535).default(22),
  username: loginUser.meta({ description: 'the account berth logs in as: root, or one with passwordless sudo' }),
  password: secret.optional(),
  private_key: secret.optional().meta({ description: 'an OpenSSH or PEM private key (unencrypted)' }),
  host_key: hostKey.optional(),
  type: machineType.default('server'),
  tags: tags.default({}),
  keep_password: keepPassword.default(false),
  allow_sudo: allowSudo.default(false),
});

export const createMachineBody = machineInput
  .refine(oneCredential, { message: 'give exactly one of password and private_key', path: ['password'] })
  .refine((b) => !(b.keep_password && !b.password), { message: 'keep_password goes with a password', path: ['keep_password'] })
  .meta({
    // The refinement above, as the document says it.
    oneOf: [{ required: ['password'] }, { required: ['private_key'] }],
    examples: [{ name: 'gpu-01', host: '10.0.0.21', port: 22, username: 'root', private_key: '-----BEGIN OPENSSH PRIVATE KEY-----\n…', type: 'gpu', tags: { gpu: 'a100' } }],
  });

export const patchMachineBody = z
  .object({
    host: hostName.optional(),
    port: z.number().int().min(1).max(65535).optional(),
    username: loginUser.optional(),
    password: secret.optional(),
    private_key: secret.optional(),
    keep_password: keepPassword.optional(),
    host_key: hostKey.nullable().optional().meta({ description: 'null forgets the pinned key; the next contact records it again' }),
    type: machineType.optional(),
    tags: tags.optional(),
    allow_sudo: allowSudo.optional(),
  })
  .strict()
  .refine((b) => !(b.password && b.private_key), { message: 'give at most one of password and private_key', path: ['password'] })
  .refine((b) => !(b.keep_password && !b.password), { message: 'keep_password: true goes with the password to keep', path: ['keep_password'] })
  .refine((b) => Object.keys(b).length > 0, { message: 'name at least one field to change' })
  .meta({
    // The refinements above, as the document says them.
    not: { required: ['password', 'private_key'] },
    minProperties: 1,
    examples: [{ tags: { gpu: 'h100' } }, { host_key: null }],
  });

export const machine = z
  .object({
    id: uuid,
    name: z.string(),
    host: z.string(),
    port: z.number().int(),
    username: z.string().optional().meta({ description: 'the account berth logs in as (admins only)' }),
    type: z.string(),
    tags: z.record(z.string(), z.string()),
    allow_sudo: z.boolean(),
    keep_password: z.boolean().meta({ description: 'berth logs in with the password it was given (no key of its own installed)' }),
    status: machineStatus,
    status_reason: z.string().nullable(),
    host_key_fingerprint: z.string().nullable(),
    host_key: z.string().nullable().meta({ description: 'the pinned host key as an OpenSSH public key line; null until berth has met the machine' }),
    reservation_id: uuid.nullable(),
    last_checked_at: timestamp.nullable(),
    created_at: timestamp,
    updated_at: timestamp,
    warning: z.string().optional().meta({ description: 'in the answer to a registration or change that gives tenants sudo: what that means' }),
  })
  .meta({
    id: 'Machine',
    description: 'Credentials are write-only: they are never returned. The login user, status reasons and reservation ids are shown to admins only.',
    examples: [
      {
        id: '8d3f5c1e-2b4a-4f6e-9a7b-1c2d3e4f5a6b',
        name: 'gpu-01',
        host: '10.0.0.21',
        port: 22,
        username: 'root',
        type: 'gpu',
        tags: { gpu: 'a100' },
        allow_sudo: false,
        keep_password: false,
        status: 'available',
        status_reason: null,
        host_key_fingerprint: 'SHA256:wN0vQ5l3o9b0bqk8Yq1l3uYF4mJ3Hq0m7l1YfK9x2aE',
        host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq8kWnJ2r6Qm9Rk4h0R0xGgK9mNq3vV4v2bT8fJ0sGm',
        reservation_id: null,
        last_checked_at: '2026-11-21T09:30:00.000Z',
        created_at: '2026-11-21T09:00:00.000Z',
        updated_at: '2026-11-21T09:30:00.000Z',
      },
    ],
  });

const tagFilter = z.string().regex(/^[A-Za-z0-9_.-]{1,64}:.{0,128}$/, 'tag filters look like key:value');

export const listMachinesQuery = z.object({
  status: machineStatus.optional(),
  type: machineType.optional(),
  tag: z
    .union([tagFilter, z.array(tagFilter).max(MAX_TAG_FILTERS)])
    .optional()
    .transform((t) => (t === undefined ? [] : Array.isArray(t) ? t : [t]))
    .meta({ description: `key:value; repeat for several (at most ${MAX_TAG_FILTERS})` }),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(128).optional(),
});

export const nameParams = z.object({ name: machineName });

export const importBody = z
  .object({ machines: z.array(z.unknown()).max(1000) })
  .meta({
    description:
      'The machine-manager YAML format (application/yaml) or the same as JSON: a `machines:` list of {name, host, port, user (or username), password or private_key, keep_password?, host_key?, type?, tags?, allow_sudo?}',
    examples: [{ machines: [{ name: 'alpine-1', host: 'localhost', port: 2221, user: 'root', password: 'test' }] }],
  });

export const importResult = z
  .object({
    created: z.number().int(),
    updated: z.number().int(),
    errors: z.array(
      z.object({
        index: z.number().int(),
        name: z.string().nullable(),
        pointer: z.string(),
        code: z.string().meta({ description: 'the problem code: validation_failed, or one of the codes POST /v1/machines answers (invalid_host_key, machine_is_vm …)' }),
        message: z.string(),
      }),
    ),
  })
  .meta({ examples: [{ created: 2, updated: 0, errors: [] }] });

export const forceQuery = z.object({
  force: z
    .enum(['true', 'false'])
    .optional()
    .transform((v) => v === 'true')
    .meta({ description: 'go ahead although the machine is booked ahead: its bookings are re-planned onto other matching machines, or fail' }),
});

export const maintenanceBody = z
  .object({ reason: z.string().min(1).max(255) })
  .meta({ examples: [{ reason: 'replacing a disk' }] });

export const checkResult = z
  .object({
    reachable: z.boolean(),
    latency_ms: z.number().nullable(),
    host_key_fingerprint: z.string().nullable(),
    status: machineStatus,
    error: z.string().optional(),
  })
  .meta({ examples: [{ reachable: true, latency_ms: 142, host_key_fingerprint: 'SHA256:wN0vQ5l3o9b0bqk8Yq1l3uYF4mJ3Hq0m7l1YfK9x2aE', status: 'available' }] });

const counts = z.object({
  total: z.number().int(),
  available: z.number().int(),
  reserved: z.number().int(),
  maintenance: z.number().int(),
  offline: z.number().int(),
  needs_reprovision: z.number().int(),
});
export const poolStats = counts
  .extend({ by_type: z.record(z.string(), counts) })
  .meta({
    examples: [
      {
        total: 3,
        available: 1,
        reserved: 1,
        maintenance: 0,
        offline: 1,
        needs_reprovision: 0,
        by_type: { server: { total: 3, available: 1, reserved: 1, maintenance: 0, offline: 1, needs_reprovision: 0 } },
      },
    ],
  });
