// Liveness and readiness. /healthz says the process is alive; /readyz says whether it can
// do its job (the database answers) and which optional capabilities this host has
// (readiness.ts asks them).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../errors/app-error.js';
import { problemSchema } from '../../http/problem-schema.js';
import type { ReadinessProbe } from './readiness.js';

const readyResponse = z
  .object({ status: z.literal('ready'), database: z.literal('ok'), capabilities: z.record(z.string(), z.unknown()) })
  .meta({ examples: [{ status: 'ready', database: 'ok', capabilities: {} }] });

export const healthRoutes: FastifyPluginAsyncZod<{ readiness: ReadinessProbe }> = async (app, { readiness }) => {
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'getHealth',
        tags: ['service'],
        summary: 'Liveness: 200 while the process runs',
        response: { 200: z.object({ status: z.literal('ok') }).meta({ examples: [{ status: 'ok' }] }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        tags: ['service'],
        summary: 'Readiness: 200 when the database answers, 503 otherwise',
        response: { 200: readyResponse, 503: problemSchema },
      },
    },
    async () => {
      try {
        await readiness.database();
      } catch {
        throw new AppError('database_unavailable', 'the database does not answer', {}, { 'retry-after': '5' });
      }
      return { status: 'ready' as const, database: 'ok' as const, capabilities: await readiness.capabilities() };
    },
  );
};
