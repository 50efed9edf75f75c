// YAML from clients, parsed where a hostile document cannot stall berth: in a worker
// thread with a memory cap, stopped after a time limit, with aliases and the number of
// nodes bounded. The `yaml` library checks duplicate keys pairwise (15,000 keys took
// seconds to minutes on the event loop), so the worker checks them itself with a Set.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface YamlLimits {
  /** The worker is stopped after this long. */
  timeoutMs: number;
  /** Scalars, sequences, mappings and aliases written in the document. */
  maxNodes: number;
  /** yaml's maxAliasCount: bounds what aliases expand to (0: none allowed). */
  maxAliases: number;
}

export class YamlError extends Error {
  override name = 'YamlError';
  constructor(
    message: string,
    /** 'syntax': not YAML; 'limit': YAML beyond the limits. */
    readonly kind: 'syntax' | 'limit',
  ) {
    super(message);
  }
}

// CommonJS, evaluated in the worker: `require` of the path resolved here.
const WORKER = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const YAML = require(workerData.yamlPath);
const { text, limits } = workerData;
function fail(kind, message) { parentPort.postMessage({ error: { kind, message } }); }
function parse() {
  const doc = YAML.parseDocument(text, { uniqueKeys: false, maxAliasCount: limits.maxAliases, prettyErrors: false });
  if (doc.errors.length) return fail('syntax', doc.errors[0].message.split('\n')[0]);
  let nodes = 0;
  let problem = null;
  YAML.visit(doc, {
    Node(_key, node) {
      if (++nodes > limits.maxNodes) { problem = ['limit', 'the document has more than ' + limits.maxNodes + ' nodes']; return YAML.visit.BREAK; }
      if (YAML.isMap(node)) {
        const seen = new Set();
        for (const pair of node.items) {
          const key = YAML.isScalar(pair.key) ? String(pair.key.value) : JSON.stringify(pair.key);
          if (seen.has(key)) { problem = ['syntax', 'the key ' + JSON.stringify(key.slice(0, 64)) + ' appears twice in one mapping']; return YAML.visit.BREAK; }
          seen.add(key);
        }
      }
    },
  });
  if (problem) return fail(problem[0], problem[1]);
  parentPort.postMessage({ value: doc.toJS({ maxAliasCount: limits.maxAliases }) });
}
try {
  parse();
} catch (err) {
  fail(/alias/i.test(err.message) ? 'limit' : 'syntax', String(err.message).split('\n')[0]);
}
`;

const yamlPath = createRequire(import.meta.url).resolve('yaml');

/** Parses `text` as one YAML document within `limits`; YamlError when it is not YAML or too much. */
export function parseYamlBounded(text: string, limits: YamlLimits): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER, {
      eval: true,
      workerData: { yamlPath, text, limits },
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
    });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      fn();
    };
    const timer = setTimeout(
      () => settle(() => reject(new YamlError(`the document took longer than ${limits.timeoutMs} ms to parse`, 'limit'))),
      limits.timeoutMs,
    );
    worker.once('message', (m: { value?: unknown; error?: { kind: 'syntax' | 'limit'; message: string } }) =>
      settle(() => (m.error ? reject(new YamlError(m.error.message, m.error.kind)) : resolve(m.value))),
    );
    // Out of memory (ERR_WORKER_OUT_OF_MEMORY) or any other death of the worker.
    worker.once('error', (err) => settle(() => reject(new YamlError(`the document could not be parsed: ${err.message}`, 'limit'))));
    worker.once('exit', () => settle(() => reject(new YamlError('the document could not be parsed', 'limit'))));
  });
}
