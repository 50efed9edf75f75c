import { z } from 'zod';
import { timestamp, uuid } from '../../http/common-schemas.js';

export const imageStatus = z.enum(['building', 'ready', 'failed']);

export const imageName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be 1-64 lowercase letters, digits, ".", "_" or "-"');

export const createImageBody = z
  .object({
    name: imageName,
    dockerfile: z
      .string()
      .min(1)
      .max(256 * 1024)
      .meta({ description: 'FROM an image this machine has (no registry is reachable), e.g. berth/debian-sshd:bookworm; it must install openssh-server' }),
  })
  .strict()
  .meta({ examples: [{ name: 'devbox', dockerfile: 'FROM berth/debian-sshd:bookworm\nRUN apt-get install -y --no-install-recommends git || true\n' }] });

/**
 * A tar build context arrives as the path of the file it was spooled to (the parser
 * writes it; a client cannot choose it); documented as the binary body it is.
 */
export const buildContextBody = z.string().meta({ description: 'a tar build context (optionally gzip/bzip2/xz-compressed) with a Dockerfile at its root', format: 'binary' });

export const createImageQuery = z.object({
  name: imageName.optional().meta({ description: 'the image name, required with a tar build context' }),
});

export const imageAccepted = z
  .object({ id: uuid, name: z.string(), status: z.literal('building') })
  .meta({ examples: [{ id: '2b5e8c1d-3f4a-4b6c-8d9e-0a1b2c3d4e5f', name: 'devbox', status: 'building' }] });

export const image = z
  .object({
    id: uuid,
    name: z.string(),
    status: imageStatus,
    error: z.string().nullable().meta({ description: "why the build failed, for admins; users read only that it failed" }),
    size_bytes: z.number().int().nullable(),
    build_ms: z.number().int().nullable(),
    convert_ms: z.number().int().nullable(),
    pool_size: z.number().int().meta({ description: 'VMs of this image the pool keeps (PUT /v1/images/{id}/pool)' }),
    config: z
      .object({
        entrypoint: z.array(z.string()).nullable(),
        cmd: z.array(z.string()).nullable(),
        env: z.array(z.string()),
        user: z.string().nullable(),
        workdir: z.string().nullable(),
      })
      .nullable()
      .optional()
      .meta({ description: 'the engine image configuration, once ready (admins only: its environment may hold secrets)' }),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({
    id: 'Image',
    examples: [
      {
        id: '2b5e8c1d-3f4a-4b6c-8d9e-0a1b2c3d4e5f',
        name: 'devbox',
        status: 'ready',
        error: null,
        size_bytes: 265289728,
        build_ms: 412,
        convert_ms: 4210,
        pool_size: 3,
        config: { entrypoint: null, cmd: ['/bin/bash'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], user: null, workdir: null },
        created_at: '2026-11-21T09:30:00.000Z',
        updated_at: '2026-11-21T09:30:05.000Z',
      },
    ],
  });

export const listImagesQuery = z.object({
  status: imageStatus.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(64).optional(),
});
