// Problem rendering: every error a client can see is an RFC 9457 document with a code of
// the catalogue, built by the problem plugin alone (a bare Fastify app, no database).
import Fastify from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AppError } from '../../src/errors/app-error.js';
import { ERROR_CODES, STATUS_TITLES } from '../../src/errors/codes.js';
import { DatabaseUnavailableError } from '../../src/infra/database.js';
import problemPlugin, { frameworkErrors } from '../../src/plugins/problem.js';

const app = Fastify({ logger: false, frameworkErrors });
beforeAll(async () => {
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(problemPlugin);
  app.get('/capacity', async () => {
    throw new AppError('insufficient_capacity', 'asked for 3 machine(s); 1 available', { available: 1 });
  });
  app.get('/throttled', async () => {
    throw new AppError('too_many_attempts', 'slow down', {}, { 'retry-after': '7' });
  });
  app.get('/expired', async () => {
    throw new AppError('token_expired', 'refresh it');
  });
  app.get('/anonymous', async () => {
    throw new AppError('missing_token', 'send one');
  });
  app.get('/database', async () => {
    throw new DatabaseUnavailableError('no answer within 2000 ms');
  });
  app.get('/bug', async () => {
    throw new Error('secret internals');
  });
  app.get('/items/:id', { schema: { params: z.object({ id: z.uuid() }) } }, async () => 'ok');
  await app.ready();
});
afterAll(() => app.close());

const get = (url: string) => app.inject({ method: 'GET', url });

describe('problem documents', () => {
  it('carry the code, its status and title, the detail, the extra members and the instance', async () => {
    const res = await get('/capacity?x=1');
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toEqual({
      type: 'https://berth.dev/problems/insufficient_capacity',
      title: 'Conflict',
      status: 409,
      detail: 'asked for 3 machine(s); 1 available',
      code: 'insufficient_capacity',
      available: 1,
      instance: '/capacity',
    });
    expect((await get('/throttled')).headers['retry-after']).toBe('7');
  });

  it('challenge a 401 as RFC 6750 says: with an error when a token was sent', async () => {
    expect((await get('/expired')).headers['www-authenticate']).toBe('Bearer realm="berth", error="invalid_token"');
    expect((await get('/anonymous')).headers['www-authenticate']).toBe('Bearer realm="berth"');
  });

  it('map validation, missing routes, bad URLs, a database away and bugs', async () => {
    const invalid = await get('/items/not-a-uuid');
    expect(invalid.json()).toMatchObject({ status: 400, code: 'validation_failed', errors: [{ pointer: '/params/id' }] });
    expect((await get('/nowhere')).json()).toMatchObject({ status: 404, code: 'route_not_found' });
    expect((await get(`/items/${'x'.repeat(200)}`)).json()).toMatchObject({ status: 414, code: 'uri_too_long' });
    expect((await get('/items/%E0%A4%A')).json()).toMatchObject({ status: 400, code: 'bad_url' });
    const db = await get('/database');
    expect(db.json()).toMatchObject({ status: 503, code: 'database_unavailable' });
    expect(db.headers['retry-after']).toBe('5');
    const bug = await get('/bug');
    expect(bug.json()).toMatchObject({ status: 500, code: 'internal_error' });
    expect(bug.body).not.toContain('secret internals');
  });

  it('come from one catalogue whose every status has a title', () => {
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      expect(STATUS_TITLES[status], code).toBeDefined();
      expect(code).toMatch(/^[a-z][a-z_]+$/);
    }
  });
});
