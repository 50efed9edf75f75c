// Throttles for the routes where each attempt costs an argon2 hash (or guesses a
// password): a limit per client address and one per account, each answering 429 with
// Retry-After. The window is short, so an attacker can delay a real user, not lock them out.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../../errors/app-error.js';

export interface ThrottleLimits {
  perAddress: number;
  perAccount: number;
  windowSeconds: number;
}

const tooMany = (detail: string, retryAfter?: string) =>
  new AppError('too_many_attempts', detail, {}, retryAfter ? { 'retry-after': retryAfter } : {});

/**
 * Route options for a throttled route: `config` holds the per-address limit (checked in
 * onRequest, before the body is read), `preHandler` the per-account one, keyed by
 * `accountOf` (which may read the body). @fastify/rate-limit runs one responding limiter
 * per request, so the second is a reporting limiter that throws itself.
 */
export function throttle(app: FastifyInstance, scope: string, limits: ThrottleLimits, accountOf: (request: FastifyRequest) => string) {
  const timeWindow = limits.windowSeconds * 1000;
  const accountLimit = app.createRateLimit({
    max: limits.perAccount,
    timeWindow,
    keyGenerator: (request) => `${scope}-account:${accountOf(request)}`,
  });
  return {
    config: {
      rateLimit: {
        max: limits.perAddress,
        timeWindow,
        keyGenerator: (request: FastifyRequest) => `${scope}-address:${request.ip}`,
        errorResponseBuilder: (_request: FastifyRequest, ctx: { after: string }) => tooMany(`too many ${scope} attempts from this address; retry in ${ctx.after}`),
      },
    },
    async preHandler(request: FastifyRequest) {
      const limit = await accountLimit(request);
      if (!limit.isAllowed && limit.isExceeded) {
        const retryAfter = String(limit.ttlInSeconds);
        throw tooMany(`too many ${scope} attempts for this account; retry in ${retryAfter} seconds`, retryAfter);
      }
    },
  };
}
