// YAML from clients, parsed where a hostile document cannot stall berth: in a worker
// thread with a memory cap, stopped once it has used a CPU budget, with aliases and the
// number of nodes bounded. The `yaml` library checks duplicate keys pairwise (15,000 keys
// took seconds to minutes on the event loop), so the worker checks them itself with a Set.
//
// The budget is the worker thread's own CPU time (Linux's /proc), not the wall clock: on a
// busy machine a document that parses in half a second of CPU can take many seconds to get
// them, and was refused as "beyond what an import may be" for the machine's load.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface YamlLimits {
  /** The worker is stopped once its thread has used this much CPU time (ten times as long on the clock, whatever it used). */
  cpuMs: number;
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
// The thread's id, whose CPU time the parent reads in /proc while this parses.
try { parentPort.postMessage({ tid: Number(require('node:fs').readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0]) }); } catch {}
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

/** Whether this system tells a thread's CPU time (Linux); elsewhere the clock stands in for it. */
const THREAD_CPU_KNOWN = existsSync('/proc/thread-self/stat');
/** /proc reports CPU times in USER_HZ, 100 a second on every Linux. */
const CLOCK_TICKS_PER_SECOND = 100;
/** How often the worker's CPU time is read. */
const CPU_CHECK_MS = 50;

/** The CPU time (user and system) thread `tid` of this process has used, in ms; null where /proc does not tell. */
function threadCpuMs(tid: number): number | null {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // stat(5): utime and stime are fields 14 and 15; those after the command name start at 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

type WorkerMessage = { tid: number } | { value: unknown } | { error: { kind: 'syntax' | 'limit'; message: string } };

/** Parses `text` as one YAML document within `limits`; YamlError when it is not YAML or too much. */
export function parseYamlBounded(text: string, limits: YamlLimits): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const worker = new Worker(WORKER, {
      eval: true,
      workerData: { yamlPath, text, limits },
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
    });
    let tid: number | null = null;
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearInterval(check);
      void worker.terminate();
      fn();
    };
    const tooMuch = (what: string) => settle(() => reject(new YamlError(`the document took more than ${what} to parse`, 'limit')));
    const check = setInterval(() => {
      const elapsed = performance.now() - started;
      // Until the worker has said which thread it is, only the clock's bound applies.
      const cpu = THREAD_CPU_KNOWN ? (tid === null ? 0 : (threadCpuMs(tid) ?? 0)) : elapsed;
      if (cpu > limits.cpuMs) tooMuch(`${limits.cpuMs} ms of CPU`);
      else if (elapsed > 10 * limits.cpuMs) tooMuch(`${(10 * limits.cpuMs) / 1000} s`);
    }, CPU_CHECK_MS);
    worker.on('message', (m: WorkerMessage) => {
      if ('tid' in m) tid = m.tid;
      else settle(() => ('error' in m ? reject(new YamlError(m.error.message, m.error.kind)) : resolve(m.value)));
    });
    // Out of memory (ERR_WORKER_OUT_OF_MEMORY) or any other death of the worker.
    worker.once('error', (err) => settle(() => reject(new YamlError(`the document could not be parsed: ${err.message}`, 'limit'))));
    worker.once('exit', () => settle(() => reject(new YamlError('the document could not be parsed', 'limit'))));
  });
}
