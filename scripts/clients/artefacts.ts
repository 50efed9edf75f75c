// Every client artefact generated from the OpenAPI document, as file path → content: what
// `npm run clients` writes, and what the suite compares with the committed files.
import path from 'node:path';
import type { OpenApiDocument } from './openapi-document.js';
import { renderPostmanCollection, renderPostmanEnvironment } from './postman.js';
import { ERROR_CODES } from '../../src/errors/codes.js';
import { renderBearerOperations, renderProblemCodes, renderSchemaTypes } from './typescript.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export async function renderClientArtefacts(document: OpenApiDocument): Promise<Map<string, string>> {
  const baseUrl = (document.servers as { url: string }[] | undefined)?.[0]?.url;
  if (!baseUrl) throw new Error('the document names no server: generate it with BERTH_PUBLIC_URL set');
  return new Map([
    ['clients/openapi.json', json(document)],
    ['clients/postman/berth.postman_collection.json', json(await renderPostmanCollection(document))],
    ['clients/postman/berth.postman_environment.json', json(renderPostmanEnvironment(baseUrl))],
    ['clients/typescript/src/generated/schema.ts', await renderSchemaTypes(document)],
    ['clients/typescript/src/generated/operations.ts', renderBearerOperations(document)],
    ['clients/typescript/src/generated/problem-codes.ts', renderProblemCodes(Object.keys(ERROR_CODES).sort())],
  ]);
}
