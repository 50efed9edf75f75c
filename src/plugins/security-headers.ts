// Headers that tell browsers and caches how to treat berth's answers. Helmet sets the
// usual set on every answer: nosniff, no framing (X-Frame-Options DENY and CSP
// frame-ancestors 'none'), no referrer, and a CSP that lets an answer opened in a browser
// run nothing. Every answer is `Cache-Control: no-store` unless its route says otherwise:
// tokens, generated passwords and private details must not stay in a cache (RFC 6749 §5.1).
// HSTS is Caddy's (Caddyfile): only the TLS end knows the site is HTTPS.
import helmet, { fastifyHelmet } from '@fastify/helmet';
import type { FastifyInstance, RouteShorthandOptions } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Route options for the interactive docs (/docs): Scalar's page runs its own scripts and
 * styles, so its CSP only forbids framing.
 */
export const DOCS_HEADERS: Pick<RouteShorthandOptions, 'helmet'> = {
  helmet: {
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: fastifyHelmet.contentSecurityPolicy.dangerouslyDisableDefaultSrc, frameAncestors: ["'none'"] } },
  },
};

export default fp(
  async function securityHeaders(app: FastifyInstance) {
    await app.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      frameguard: { action: 'deny' },
      strictTransportSecurity: false,
    });
    app.addHook('onSend', async (_request, reply, payload) => {
      if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
      return payload;
    });
  },
  { name: 'security-headers' },
);
