import { z } from 'zod';
import { email, newPassword, presentedPassword, timestamp, username, uuid } from '../../http/common-schemas.js';

export const role = z.enum(['user', 'admin']);

export const user = z
  .object({
    id: uuid,
    username,
    email: z.string().nullable(),
    role,
    disabled: z.boolean(),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({
    id: 'User',
    examples: [
      {
        id: '0b6f9a52-6a43-4c55-9f0e-3b0d7f1f2a10',
        username: 'alice',
        email: 'alice@example.com',
        role: 'user',
        disabled: false,
        created_at: '2026-11-21T09:30:00.000Z',
        updated_at: '2026-11-21T09:30:00.000Z',
      },
    ],
  });

export const registerBody = z
  .object({ username, password: newPassword, email: email.optional() })
  .refine((b) => b.password.toLowerCase() !== b.username, { path: ['password'], message: 'must not be the username' })
  .meta({ examples: [{ username: 'alice', password: 'correct horse battery staple', email: 'alice@example.com' }] });

/** Body is optional: HTTP Basic may carry the credentials instead. */
export const tokenBody = z
  .object({ username: z.string().min(1).max(64), password: presentedPassword })
  .nullish()
  .meta({ examples: [{ username: 'alice', password: 'correct horse battery staple' }] });

export const tokenResponse = z
  .object({
    access_token: z.string(),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int().meta({ description: 'seconds until the access token expires' }),
    refresh_token: z.string(),
    refresh_expires_in: z.number().int().meta({ description: 'seconds until the refresh token expires if unused' }),
    session_id: uuid,
  })
  .meta({
    id: 'TokenResponse',
    examples: [
      {
        access_token: 'eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjIwMjYxMTIxVDA5MzAwMFotYTFiMmMzZDQifQ.eyJzdWIiOiIuLi4ifQ.c2ln',
        token_type: 'Bearer',
        expires_in: 900,
        refresh_token: 'brt_q5bH3gkq2zW0m6Jm4nUQy1VYb8pZ4kYkQ2y0rZ9cZfI',
        refresh_expires_in: 1209600,
        session_id: '5d1c2a8e-4a8e-4a7c-9a53-2f0d3c6f4b11',
      },
    ],
  });

export const refreshBody = z
  .object({ refresh_token: z.string().min(1).max(512) })
  .nullish()
  .meta({ examples: [{ refresh_token: 'brt_q5bH3gkq2zW0m6Jm4nUQy1VYb8pZ4kYkQ2y0rZ9cZfI' }] });

export const logoutBody = refreshBody;

export const verifyResponse = z
  .object({
    active: z.literal(true),
    sub: uuid,
    username,
    role,
    session_id: uuid,
    iat: z.number().int(),
    exp: z.number().int(),
  })
  .meta({
    id: 'TokenIntrospection',
    examples: [
      {
        active: true,
        sub: '0b6f9a52-6a43-4c55-9f0e-3b0d7f1f2a10',
        username: 'alice',
        role: 'user',
        session_id: '5d1c2a8e-4a8e-4a7c-9a53-2f0d3c6f4b11',
        iat: 1795253400,
        exp: 1795254300,
      },
    ],
  });

export const whoamiResponse = z
  .object({ id: uuid, username, email: z.string().nullable(), role, session_id: uuid })
  .meta({
    examples: [
      {
        id: '0b6f9a52-6a43-4c55-9f0e-3b0d7f1f2a10',
        username: 'alice',
        email: 'alice@example.com',
        role: 'user',
        session_id: '5d1c2a8e-4a8e-4a7c-9a53-2f0d3c6f4b11',
      },
    ],
  });

export const passwordChangeBody = z
  .object({
    current_password: presentedPassword,
    new_password: newPassword,
    kill_sessions: z.boolean().default(false).meta({ description: 'revoke every other session of the user' }),
  })
  .meta({ examples: [{ current_password: 'correct horse battery staple', new_password: 'a much longer passphrase 2026', kill_sessions: true }] });

export const passwordChangeResponse = z
  .object({ changed: z.literal(true), sessions_revoked: z.number().int() })
  .meta({ examples: [{ changed: true, sessions_revoked: 2 }] });

export const session = z
  .object({
    id: uuid,
    created_at: timestamp,
    last_used_at: timestamp,
    expires_at: timestamp,
    user_agent: z.string().nullable(),
    ip_address: z.string().nullable(),
    current: z.boolean().meta({ description: 'true for the session of the token making the request' }),
  })
  .meta({
    id: 'Session',
    examples: [
      {
        id: '5d1c2a8e-4a8e-4a7c-9a53-2f0d3c6f4b11',
        created_at: '2026-11-21T09:30:00.000Z',
        last_used_at: '2026-11-21T09:45:00.000Z',
        expires_at: '2026-12-21T09:30:00.000Z',
        user_agent: 'curl/8.5.0',
        ip_address: '127.0.0.1',
        current: true,
      },
    ],
  });

export const jwks = z
  .object({ keys: z.array(z.object({ kty: z.string(), crv: z.string(), x: z.string(), kid: z.string(), alg: z.string(), use: z.string() })) })
  .meta({ examples: [{ keys: [{ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: '20261121T093000000Z-a1b2c3d4', alg: 'EdDSA', use: 'sig' }] }] });
