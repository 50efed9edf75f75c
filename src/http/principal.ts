// The caller of an authenticated request, as the identity guard (modules/identity/guard.ts)
// put it on the request: route handlers read it here.
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../shared/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** The principal of an authenticated request; only call behind a guard. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new Error('principalOf() used on a route without an auth guard');
  return request.principal;
}

/** Who is looking, for answers whose details only admins may see. */
export function viewerOf(request: FastifyRequest): { admin: boolean } {
  return { admin: principalOf(request).role === 'admin' };
}
