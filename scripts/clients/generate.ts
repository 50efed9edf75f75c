// `npm run clients`: regenerates every client artefact from the OpenAPI document berth
// serves (built offline, with BERTH_PUBLIC_URL = https://localhost, Caddy's default site).
import fs from 'node:fs';
import path from 'node:path';
import { renderClientArtefacts, ROOT } from './artefacts.js';
import { buildOpenApiDocument } from './openapi-document.js';

const artefacts = await renderClientArtefacts(await buildOpenApiDocument());
for (const [file, content] of artefacts) {
  const target = path.join(ROOT, file);
  const before = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : null;
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, content);
  console.log(`[clients] ${before === content ? 'unchanged' : 'wrote    '} ${file}`);
}
// The document was built from an app whose start-up jobs wait for a database that is not there.
process.exit(0);
