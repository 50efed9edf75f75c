// The OpenAPI document exactly as berth serves it, built offline: the real application
// with a throw-away configuration and a database it never connects to (the document
// needs the routes, not the data). Clients are generated from this.
// The app is not closed: its start-up jobs keep waiting for that database, and closing
// would wait for them (~20 s). Call this from a process that exits when it is done.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createPrisma } from '../../src/infra/database.js';
import { Keyring } from '../../src/modules/identity/keyring.js';

/** The address the committed client artefacts name: Caddy's default site (docker-compose.yml, the Caddyfile). */
export const ARTEFACT_PUBLIC_URL = 'https://localhost';

// The document as generators read it: any JSON, with its paths.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type OpenApiDocument = Record<string, any> & { paths: Record<string, Record<string, any>> };

export async function buildOpenApiDocument(publicUrl = ARTEFACT_PUBLIC_URL): Promise<OpenApiDocument> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-openapi-'));
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', BERTH_DATA_DIR: dataDir, BERTH_PUBLIC_URL: publicUrl });
  const prisma = createPrisma({ socketPath: path.join(dataDir, 'no-database.sock'), user: 'none', database: 'none' });
  const app = await buildApp(config, { prisma, keyring: Keyring.open(config.jwt.keysDir) });
  try {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    if (res.statusCode !== 200) throw new Error(`GET /openapi.json answered ${res.statusCode}: ${res.body}`);
    return res.json() as OpenApiDocument;
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
