// The OpenAPI 3.1 document, generated from the routes' zod schemas, served at
// /openapi.json, with interactive docs (Scalar, bundled locally) at /docs.
import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { completeResponses, type Document } from './openapi-responses.js';
import { DOCS_HEADERS } from './security-headers.js';

type TransformInput = Parameters<typeof jsonSchemaTransform>[0];

/**
 * The zod transform converts one body schema; a route that takes several media types
 * (`body: { content: { type: { schema } } }`, which Fastify validates per type) gets
 * each converted on its own.
 */
function transform(doc: TransformInput) {
  const body = (doc.schema as { body?: { content?: Record<string, { schema: unknown }> } } | undefined)?.body;
  if (!body?.content) return jsonSchemaTransform(doc);
  const content = Object.fromEntries(
    Object.entries(body.content).map(([type, { schema }]) => [
      type,
      { schema: (jsonSchemaTransform({ ...doc, schema: { body: schema } } as TransformInput).schema as { body: unknown }).body },
    ]),
  );
  const rest = jsonSchemaTransform({ ...doc, schema: { ...doc.schema, body: undefined } } as TransformInput);
  return { ...rest, schema: { ...rest.schema, body: { content } } };
}

export const TAGS = [
  { name: 'service', description: 'Health, readiness, the API document and the signing keys' },
  { name: 'identity', description: 'Registration, tokens, sessions and passwords' },
  { name: 'users', description: 'User administration' },
  { name: 'machines', description: 'The machine registry and pool statistics' },
  { name: 'reservations', description: 'Machines for a person for a time, with an account on each' },
  { name: 'images', description: 'Dockerfiles built into read-only bases for VMs' },
  { name: 'vms', description: 'VMs booted from images; each joins the pool as a machine' },
  { name: 'webhooks', description: 'Events POSTed to your URLs, signed per the Standard Webhooks specification' },
];

const DOCS = '/docs';
/** Response headers the inner instance sets that belong to its own connection. */
const HOP_HEADERS = new Set(['content-length', 'connection', 'date', 'keep-alive', 'transfer-encoding']);

/**
 * /docs: Scalar's API reference, loaded on the first visit instead of at start-up. Its
 * Fastify plugin carries Scalar's 4 MiB browser bundle as a string (held twice, as module
 * source and as the string) and an OpenAPI parser: ~20 MB resident once visited (measured),
 * for a page few people open. The plugin runs in an inner Fastify instance made on that first visit;
 * berth's own /docs routes forward to it.
 */
function lazyDocs(app: FastifyInstance, configuration: { url: string; title: string }) {
  let inner: Promise<FastifyInstance> | undefined;
  const load = async () => {
    const { default: scalar } = await import('@scalar/fastify-api-reference');
    const docs = Fastify({ logger: false });
    await docs.register(scalar, { routePrefix: DOCS, configuration });
    await docs.ready();
    return docs;
  };
  for (const url of [DOCS, `${DOCS}/`, `${DOCS}/js/scalar.js`]) {
    app.get(url, { schema: { hide: true }, ...DOCS_HEADERS }, async (request, reply) => {
      // A failed load (it should not) is tried again on the next visit.
      const docs = await (inner ??= load().catch((err: unknown) => ((inner = undefined), Promise.reject(err))));
      const res = await docs.inject({ method: 'GET', url: request.url, headers: { host: request.headers.host ?? 'localhost' } });
      for (const [name, value] of Object.entries(res.headers)) if (!HOP_HEADERS.has(name) && value !== undefined) reply.header(name, value);
      return reply.code(res.statusCode).send(res.rawPayload);
    });
  }
  app.addHook('onClose', async () => {
    if (inner) await (await inner.catch(() => null))?.close();
  });
}

export default fp(
  async function openapiPlugin(app: FastifyInstance, opts: { version: string; publicUrl?: string }) {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'berth',
          version: opts.version,
          description:
            'berth shares a pool of machines: identity, a machine registry, reservations with real accounts, and VMs built from Dockerfiles. ' +
            'Errors are RFC 9457 `application/problem+json` with a stable `code`.',
        },
        // Generators take their base URL from here; without it the document is relative to where it was fetched.
        ...(opts.publicUrl && { servers: [{ url: opts.publicUrl, description: 'berth (BERTH_PUBLIC_URL)' }] }),
        tags: TAGS,
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token from POST /v1/token' },
            basicAuth: { type: 'http', scheme: 'basic', description: 'Username and password, only on POST /v1/token' },
          },
        },
      },
      transform,
      transformObject: (doc) => completeResponses(jsonSchemaTransformObject(doc) as Document) as ReturnType<typeof jsonSchemaTransformObject>,
    });

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    lazyDocs(app, { url: '/openapi.json', title: 'berth API' });
  },
  { name: 'openapi' },
);
