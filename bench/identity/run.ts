// bench/identity: berth on its real (embedded) MariaDB against a bare Fastify route,
// measured in the same run with autocannon from this process.
//   npm run bench:identity        (BENCH_SECONDS=8 by default)
// Prints requests/s, p50/p99 and the ratio to the bare route, and writes RESULTS.md.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { startServer, type ServerProcess } from '../../test/helpers/server-process.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** Rounds of bare → whoami → verify; each ratio is taken against its own round's reference. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 50;
const PASSWORD = 'a benchmark passphrase';
const here = path.dirname(new URL(import.meta.url).pathname);

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  note?: string;
  /** Throughput relative to the bare route measured in the same round. */
  ratio?: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median of each figure over rounds; the ratio is the median of the per-round ratios. */
function combine(rounds: Row[], references: Row[]): Row {
  return {
    ...rounds[0]!,
    rps: median(rounds.map((r) => r.rps)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    errors: rounds.reduce((n, r) => n + r.errors, 0),
    ratio: median(rounds.map((r, i) => r.rps / references[i]!.rps)),
    note: `${rounds[0]!.note ?? ''}${rounds[0]!.note ? '; ' : ''}median of ${rounds.length}`,
  };
}

async function load(name: string, opts: autocannon.Options, note?: string): Promise<Row> {
  const r = await autocannon({ duration: SECONDS, connections: CONNECTIONS, ...opts });
  const bad = r.errors + r.timeouts + r.non2xx;
  return { name, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: bad, note };
}

async function startBare(): Promise<{ url: string; stop(): void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'bare-server.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  return { url, stop: () => child.kill('SIGTERM') };
}

async function json(res: Response) {
  if (!res.ok) throw new Error(`${res.url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, string>;
}

/** Registers a user and opens `count` sessions, so connections do not all share one token. */
async function tokens(url: string, count: number): Promise<{ access: string[] }> {
  await fetch(`${url}/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password: PASSWORD }) });
  const access: string[] = [];
  for (let i = 0; i < count; i++) {
    const t = await json(await fetch(`${url}/v1/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password: PASSWORD }) }));
    access.push(t.access_token!);
  }
  return { access };
}

function rotating(method: 'GET' | 'POST', pathName: string, access: string[]): autocannon.Request[] {
  let i = 0;
  return [{ method, path: pathName, setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${access[i++ % access.length]}` } }) }];
}

async function berth(dataDir: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  return startServer({
    BERTH_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ADMIN_PASSWORD: 'bench admin passphrase',
    BERTH_LOGIN_MAX_PER_IP: '1000000000',
    BERTH_LOGIN_MAX_PER_USERNAME: '1000000000',
    ...env,
  });
}

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-'));
  const rows: Row[] = [];
  const bare = await startBare();
  let server = await berth(dataDir);
  try {
    const { access } = await tokens(server.url, CONNECTIONS);
    const login = { method: 'POST' as const, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password: PASSWORD }) };

    // Warm both processes up (JIT, connection pools) so the first route measured is not penalised.
    await Promise.all([
      autocannon({ url: bare.url, duration: 2, connections: 10 }),
      autocannon({ url: server.url, duration: 2, connections: 10, requests: rotating('GET', '/v1/whoami', access) }),
    ]);
    await autocannon({ url: server.url, duration: 2, connections: 10, requests: rotating('POST', '/v1/token/verify', access) });

    const bareRounds: Row[] = [];
    const whoamiRounds: Row[] = [];
    const verifyRounds: Row[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      bareRounds.push(await load('bare Fastify route (reference)', { url: bare.url }));
      whoamiRounds.push(await load('GET /v1/whoami', { url: server.url, requests: rotating('GET', '/v1/whoami', access) }, '50 sessions, session cache 1 s'));
      verifyRounds.push(await load('POST /v1/token/verify', { url: server.url, requests: rotating('POST', '/v1/token/verify', access) }, '50 sessions, session cache 1 s'));
    }
    rows.push(combine(bareRounds, bareRounds), combine(whoamiRounds, bareRounds), combine(verifyRounds, bareRounds));
    rows.push(await load('POST /v1/token', { url: `${server.url}/v1/token`, ...login }, 'argon2id m=19 MiB t=2 p=1'));

    // Hashing must not block the event loop: /healthz while 20 logins run at once.
    const [logins, health] = await Promise.all([
      load('  (20 concurrent logins)', { url: `${server.url}/v1/token`, connections: 20, ...login }),
      load('GET /healthz during 20 concurrent logins', { url: `${server.url}/healthz`, connections: 5 }),
    ]);
    rows.push(health, logins);

    // The same checks with the session cache off: one database lookup per request.
    await server.stop();
    server = await berth(dataDir, { BERTH_SESSION_CACHE_MS: '0' });
    const cold = await tokens(server.url, CONNECTIONS);
    rows.push(await load('GET /v1/whoami, session cache off', { url: server.url, requests: rotating('GET', '/v1/whoami', cold.access) }, 'a DB lookup per request'));
    rows.push(await load('POST /v1/token/verify, session cache off', { url: server.url, requests: rotating('POST', '/v1/token/verify', cold.access) }, 'a DB lookup per request'));
  } finally {
    await server.stop();
    bare.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const reference = rows[0]!.rps;
  const header = '| measurement | req/s | p50 ms | p99 ms | vs bare | errors | note |\n|---|---:|---:|---:|---:|---:|---|';
  const lines = rows.map(
    (r) => `| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${(((r.ratio ?? r.rps / reference)) * 100).toFixed(1)}% | ${r.errors} | ${r.note ?? ''} |`,
  );
  const table = [header, ...lines].join('\n');
  console.log(table);
  const stamp = new Date().toISOString();
  const doc = `# bench/identity — latest results\n\n${stamp}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ` +
    `${SECONDS} s per measurement, ${CONNECTIONS} connections unless noted, autocannon on the same machine. ` +
    `The first three rows are medians of ${ROUNDS} interleaved rounds; their ratio is taken against the bare route of the same round.\n` +
    `berth runs as \`src/server.ts\` on its embedded MariaDB with LOG_LEVEL=warn; the reference is a bare Fastify route in its own process.\n\n${table}\n`;
  fs.writeFileSync(path.join(here, 'RESULTS.md'), doc);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
