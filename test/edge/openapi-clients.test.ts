// The OpenAPI document as generators need it (valid OpenAPI 3.1, the server from
// BERTH_PUBLIC_URL, every operation with an operationId, a tag and request examples that
// are valid bodies), and the committed client artefacts that `npm run clients` derives
// from it: a test fails as soon as they no longer match what the current code generates.
import fs from 'node:fs';
import path from 'node:path';
import { compileErrors, validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { renderClientArtefacts, ROOT } from '../../scripts/clients/artefacts.js';
import { ARTEFACT_PUBLIC_URL, type OpenApiDocument } from '../../scripts/clients/openapi-document.js';
import { createTestApp, json, type TestApp } from '../helpers/app.js';

let t: TestApp;
let document: OpenApiDocument;
beforeAll(async () => {
  t = await createTestApp({ BERTH_PUBLIC_URL: `${ARTEFACT_PUBLIC_URL}/` });
  document = json(await t.app.inject({ method: 'GET', url: '/openapi.json' }));
});
afterAll(() => t.close());

const operations = () =>
  Object.entries(document.paths).flatMap(([p, item]) => Object.entries(item).map(([method, op]) => ({ id: `${method.toUpperCase()} ${p}`, op })));

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1 (@readme/openapi-parser)', async () => {
    const result = await validate(structuredClone(document) as Parameters<typeof validate>[0]);
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
    expect(document.openapi).toBe('3.1.0');
  });

  it('names the server clients use: BERTH_PUBLIC_URL, without a trailing slash', async () => {
    expect(document.servers).toEqual([{ url: ARTEFACT_PUBLIC_URL, description: expect.any(String) }]);
    const plain = await createTestApp();
    try {
      expect(json(await plain.app.inject({ method: 'GET', url: '/openapi.json' })).servers).toBeUndefined();
    } finally {
      await plain.close();
    }
    for (const bad of ['berth.example.com', 'ftp://berth.example.com', 'https://berth.example.com/?x=1']) {
      expect(() => loadConfig({ BERTH_PUBLIC_URL: bad }), bad).toThrow(ConfigError);
    }
  });

  it('gives every operation an operationId and a declared tag', () => {
    const tags = new Set((document.tags as { name: string }[]).map((t) => t.name));
    for (const { id, op } of operations()) {
      expect(op.operationId, id).toMatch(/^[a-z][A-Za-z]+$/);
      expect(op.tags?.length, id).toBe(1);
      expect(tags.has(op.tags[0]), `${id}: tag ${op.tags[0]}`).toBe(true);
    }
  });

  it('gives every request body an example that is a valid body', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema({ $id: 'berth', components: document.components }, 'berth');
    const resolve = (schema: unknown) => JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"berth#/components/'));
    let checked = 0;
    for (const { id, op } of operations()) {
      for (const [type, media] of Object.entries((op.requestBody?.content ?? {}) as Record<string, { schema: any; example?: unknown; examples?: Record<string, { value: unknown }> }>)) {
        if (media.schema?.format === 'binary') continue; // a tar build context: no JSON example to give
        const examples = media.example !== undefined ? [media.example] : Object.values(media.examples ?? {}).map((e) => e.value);
        expect(examples.length, `${id} ${type}: no example`).toBeGreaterThan(0);
        const check = ajv.compile(resolve(media.schema));
        for (const example of examples) {
          expect(check(example), `${id} ${type}: ${JSON.stringify(example)}\n${ajv.errorsText(check.errors)}`).toBe(true);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(15);
  });
});

describe('the committed client artefacts', () => {
  it('are exactly what `npm run clients` generates from the current document', async () => {
    const artefacts = await renderClientArtefacts(document);
    expect([...artefacts.keys()].sort()).toEqual([
      'clients/openapi.json',
      'clients/postman/berth.postman_collection.json',
      'clients/postman/berth.postman_environment.json',
      'clients/typescript/src/generated/operations.ts',
      'clients/typescript/src/generated/problem-codes.ts',
      'clients/typescript/src/generated/schema.ts',
    ]);
    const stale = [...artefacts].filter(([file, content]) => {
      const committed = path.join(ROOT, file);
      return !fs.existsSync(committed) || fs.readFileSync(committed, 'utf8') !== content;
    });
    expect(stale.map(([file]) => file), 'stale client artefacts: run `npm run clients` and commit the result').toEqual([]);
  });

  it('are generated the same way every time (the converter fakes values from a fixed seed)', async () => {
    const [a, b] = [await renderClientArtefacts(document), await renderClientArtefacts(document)];
    expect(b).toEqual(a);
  });
});
