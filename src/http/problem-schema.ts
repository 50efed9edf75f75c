// The RFC 9457 problem document berth answers every error with, as a schema for the
// routes' responses and the OpenAPI document.
import { z } from 'zod';
import { ERROR_CODES } from '../errors/codes.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
export const PROBLEM_TYPE_BASE = 'https://berth.dev/problems/';

export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    code: z.enum(Object.keys(ERROR_CODES) as [keyof typeof ERROR_CODES, ...(keyof typeof ERROR_CODES)[]]),
    instance: z.string().optional(),
    errors: z.array(z.object({ pointer: z.string(), message: z.string() })).optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'Problem',
    description: 'RFC 9457 problem details; `code` is stable and machine-readable (see the catalogue in src/errors/codes.ts)',
    examples: [
      {
        type: `${PROBLEM_TYPE_BASE}invalid_credentials`,
        title: 'Unauthorized',
        status: 401,
        detail: 'username or password is wrong',
        code: 'invalid_credentials',
        instance: '/v1/token',
      },
    ],
  });
