import { z } from 'zod';
import { timestamp, uuid } from '../../http/common-schemas.js';
import { machineName, tags } from '../machines/schemas.js';
import { ACCOUNT_NAME } from './accounts.js';

export const reservationStatus = z.enum(['queued', 'scheduled', 'provisioning', 'active', 'releasing', 'released', 'failed']);

const sshPublicKey = z
  .string()
  .max(16_384)
  .regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [^\r\n]*)?$/, 'must be one OpenSSH public key line');

export const createReservationBody = z
  .object({
    count: z.number().int().min(1).max(200).optional(),
    machines: z.array(machineName).min(1).max(200).optional().meta({ description: 'reserve exactly these machines', uniqueItems: true }),
    type: z.string().max(32).optional(),
    tags: tags.optional().meta({ description: 'every tag must match' }),
    duration_minutes: z.number().int().min(1).max(1_000_000).optional().meta({ description: 'default 60; capped by the server policy' }),
    username: z
      .string()
      .regex(ACCOUNT_NAME, 'must be 2-32 characters: a lowercase letter, then lowercase letters, digits, _ or -')
      .optional()
      .meta({ description: "the Unix account to create; default: the caller's username" }),
    password: z
      .string()
      .min(8)
      .max(256)
      // eslint-disable-next-line no-control-regex -- control characters are exactly what it refuses
      .regex(/^[^\x00-\x1f\x7f]+$/, 'must not contain control characters')
      .optional()
      .meta({
        description:
          'the account password; generated (and returned once) when neither password nor ssh_public_key is given. Machines receive it only hashed (SHA-512 crypt)',
      }),
    ssh_public_key: sshPublicKey.optional(),
    wait_minutes: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 60)
      .optional()
      .meta({ description: 'if the machines are not free now, wait up to this long in the queue (202 `queued`) instead of a 409; capped by the server policy' }),
    start_at: z.iso
      .datetime({ offset: true })
      .optional()
      .meta({ description: 'book for this start (RFC 3339, in the future, within the booking horizon): 201 `scheduled` with its machines, activated then' }),
  })
  .strict()
  .refine((b) => !(b.count !== undefined && b.machines), { message: 'give count or machines, not both', path: ['count'] })
  .refine((b) => !(b.wait_minutes !== undefined && b.start_at !== undefined), { message: 'give wait_minutes or start_at, not both', path: ['wait_minutes'] })
  .refine((b) => !b.machines || new Set(b.machines).size === b.machines.length, { message: 'a machine is named twice', path: ['machines'] })
  .meta({
    // The first refinement above, as the document says it (uniqueItems says the second).
    not: { anyOf: [{ required: ['count', 'machines'] }, { required: ['wait_minutes', 'start_at'] }] },
    examples: [
      { count: 2, duration_minutes: 120, ssh_public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0Hc8vJp2C1mYpA3m8k9rQ alice@laptop' },
      { machines: ['gpu-01'], username: 'alice', duration_minutes: 30 },
      { count: 1, type: 'gpu', tags: { gpu: 'a100' } },
      { count: 2, duration_minutes: 60, wait_minutes: 60 },
      { count: 4, type: 'gpu', start_at: '2026-12-09T09:00:00Z', duration_minutes: 240 },
    ],
  });

export const reservation = z
  .object({
    id: uuid,
    status: reservationStatus,
    owner: z.string(),
    account: z.object({
      username: z.string(),
      password: z.string().optional().meta({
        description:
          'when berth generated it, shown once: in the response that created the reservation, or — for one that was queued or booked — in its owner’s first GET of it once active',
      }),
    }),
    machines: z.array(
      z.object({
        name: z.string(),
        host: z.string().meta({ description: 'where to connect: the machine, or the VM host that forwards to a VM' }),
        port: z.number().int(),
        host_key: z.string().nullable().meta({ description: 'the pinned SSH host key (an OpenSSH public key line); null until berth has met the machine' }),
      }),
    ),
    known_hosts: z.string().meta({ description: 'known_hosts lines for every machine whose host key berth has pinned: ssh -o UserKnownHostsFile=<this> -o StrictHostKeyChecking=yes' }),
    duration_minutes: z.number().int(),
    start_at: timestamp.nullable().meta({ description: 'a booking’s start; null for one that started when asked or queued' }),
    wait_until: timestamp.nullable().meta({ description: 'a queued request gives up then' }),
    queue_position: z.number().int().nullable().meta({ description: 'a queued request’s place in line (1: next); null otherwise' }),
    estimated_start: timestamp.nullable().meta({ description: 'when a queued request is expected to start (the planner’s estimate; null: it cannot tell)' }),
    created_at: timestamp,
    activated_at: timestamp.nullable(),
    expires_at: timestamp.nullable(),
    max_expires_at: timestamp,
    seconds_remaining: z.number().int(),
    released_at: timestamp.nullable(),
    release_reason: z.string().nullable(),
    failure_reason: z.string().nullable(),
  })
  .meta({
    id: 'Reservation',
    examples: [
      {
        id: '3f1e6a4b-8c2d-4e5f-9a0b-1c2d3e4f5a6b',
        status: 'active',
        owner: 'alice',
        account: { username: 'alice', password: 'Zq3v9xT1bN4mK8pL2wR6yH0s' },
        machines: [
          { name: 'gpu-01', host: '10.0.0.21', port: 22, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq8kWnJ2r6Qm9Rk4h0R0xGgK9mNq3vV4v2bT8fJ0sGm' },
          { name: 'gpu-02', host: '10.0.0.22', port: 22, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPp4nYtW0c3v8Qe2s9Lk1a7RzB6xUo5mH3jD0fKq2wVt' },
        ],
        known_hosts:
          '10.0.0.21 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq8kWnJ2r6Qm9Rk4h0R0xGgK9mNq3vV4v2bT8fJ0sGm\n10.0.0.22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPp4nYtW0c3v8Qe2s9Lk1a7RzB6xUo5mH3jD0fKq2wVt\n',
        duration_minutes: 120,
        start_at: null,
        wait_until: null,
        queue_position: null,
        estimated_start: null,
        created_at: '2026-11-21T09:30:00.000Z',
        activated_at: '2026-11-21T09:30:01.200Z',
        expires_at: '2026-11-21T11:30:00.000Z',
        max_expires_at: '2026-11-22T09:30:00.000Z',
        seconds_remaining: 7200,
        released_at: null,
        release_reason: null,
        failure_reason: null,
      },
    ],
  });

export const listReservationsQuery = z.object({
  all: z
    .enum(['true', 'false'])
    .optional()
    .transform((v) => v === 'true')
    .meta({ description: "admin: everyone's reservations" }),
  user: z.string().max(64).optional().meta({ description: "admin: this user's reservations" }),
  status: reservationStatus.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

export const extendBody = z
  .object({ minutes: z.number().int().min(1).max(7 * 24 * 60) })
  .meta({ examples: [{ minutes: 30 }] });

export const idempotencyHeaders = z.object({
  'idempotency-key': z
    .string()
    .min(1)
    .max(255)
    .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
    .optional()
    .meta({ description: 'the same key and body return the same reservation instead of making a second one' }),
});

export const releaseAllResult = z.object({ released: z.number().int() }).meta({ examples: [{ released: 3 }] });
