// bench/reads: the lists clients poll, on a real berth (the compiled server, started as
// `npm start` serves it, on its embedded MariaDB in a temporary data directory), each
// against a bare Fastify route running the same SELECT through the raw mariadb driver
// (bare-server.ts), measured in the same rounds with autocannon from this process; and the
// server's resident memory. Rows are written straight into the database (seed.ts).
//   npm run bench:reads        (BENCH_SECONDS=5, BENCH_ROUNDS=3 by default)
// Prints req/s, p50/p99 and the ratio to the reference, and rewrites RESULTS.md.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import mariadb from 'mariadb';
import { seedMachines, seedReservations, seedVms } from './seed.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 50;
const PASSWORD = 'a benchmark passphrase';
const ADMIN_PASSWORD = 'bench admin passphrase';
const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../..');

const TARGET = { listRatio: 0.5, identityRatio: 0.4, p99Ms: 25, idleRssMb: 150, endRssMb: 250 };

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** Cores other processes of the machine kept busy during the measurement (not berth, MariaDB, the reference or this one). */
  others: number;
  reference?: string;
  ratio?: number;
  target?: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ---- the machine's load: CPU time of every process but ours, from /proc ----

const TICKS_PER_SECOND = 100;
function busyTicks(): number {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + cpu[7]!;
}
function processTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return 0;
  }
}
const ours: number[] = [process.pid];
function othersMeter() {
  const start = { busy: busyTicks(), ours: ours.reduce((n, pid) => n + processTicks(pid), 0), at: performance.now() };
  return () => {
    const seconds = (performance.now() - start.at) / 1000;
    const others = busyTicks() - start.busy - (ours.reduce((n, pid) => n + processTicks(pid), 0) - start.ours);
    return Math.max(0, others / TICKS_PER_SECOND / seconds);
  };
}

function rssMb(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

// ---- processes ----

async function waitForListening(child: ChildProcess, what: string): Promise<string> {
  let out = '';
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${out}`)), 120_000);
    const look = (d: Buffer) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', (d: Buffer) => (out += d));
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${out}`)));
  });
}

/**
 * berth as `npm start` serves it: scripts/serve.sh exec's node on dist/, so the child's pid
 * is berth's. BENCH_BERTH_ROOT names another built checkout to measure instead (an older
 * commit, for a before/after); one without serve.sh is run as its `npm start` ran it.
 */
async function startBerth(dataDir: string) {
  const served = process.env.BENCH_BERTH_ROOT ? path.resolve(process.env.BENCH_BERTH_ROOT) : root;
  const command = fs.existsSync(path.join(served, 'scripts/serve.sh'))
    ? ['bash', [path.join(served, 'scripts/serve.sh')]]
    : [process.execPath, ['--disable-warning=FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK', 'dist/server.js']];
  const child = spawn(command[0] as string, command[1] as string[], {
    cwd: served,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      PORT: '0',
      LOG_LEVEL: 'warn',
      BERTH_DATA_DIR: dataDir,
      ADMIN_PASSWORD,
      BERTH_LOGIN_MAX_PER_IP: '1000000000',
      BERTH_LOGIN_MAX_PER_USERNAME: '1000000000',
      // To compare other heap settings: NODE_OPTIONS=--max-old-space-size=… npm run bench:reads
      ...(process.env.NODE_OPTIONS && { NODE_OPTIONS: process.env.NODE_OPTIONS }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await waitForListening(child, 'berth');
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return { pid: child.pid!, url, stop: () => (child.kill('SIGTERM'), exited) };
}

async function startBare(socketPath: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'bare-server.ts')], {
    cwd: root,
    env: { ...process.env, BENCH_DB_SOCKET: socketPath, BENCH_DB_NAME: 'berth' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await waitForListening(child, 'the reference server');
  return { pid: child.pid!, url, stop: () => child.kill('SIGTERM') };
}

// ---- requests ----

async function post(url: string, body: unknown): Promise<Record<string, string>> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, string>;
}

/** `count` sessions of `username`, so the 50 connections do not all present one token. */
async function accessTokens(url: string, username: string, password: string, count: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) tokens.push((await post(`${url}/v1/token`, { username, password })).access_token!);
  return tokens;
}

function rotating(method: 'GET' | 'POST', pathName: string, tokens: string[]): autocannon.Request[] {
  let i = 0;
  return [{ method, path: pathName, setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer ${tokens[i++ % tokens.length]}` } }) }];
}

interface Measure {
  name: string;
  url: string;
  requests?: autocannon.Request[];
}

async function load(m: Measure, seconds = SECONDS): Promise<Row> {
  const meter = othersMeter();
  const r = await autocannon({ url: m.url, duration: seconds, connections: CONNECTIONS, ...(m.requests && { requests: m.requests }) });
  return {
    name: m.name,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
    others: meter(),
  };
}

/**
 * Rounds of (reference, then each of its measurements); each ratio is taken against its own
 * round's reference, and every figure is the median over the rounds.
 */
async function rounds(groups: { reference: Measure; measures: (Measure & { target: 'list' | 'list20' | 'identity' })[] }[]): Promise<Row[]> {
  const results = new Map<string, Row[]>();
  const keep = (row: Row) => results.set(row.name, [...(results.get(row.name) ?? []), row]);
  for (const g of groups) for (const m of [g.reference, ...g.measures]) await load(m, 2); // warm-up: JIT, pools
  for (let round = 0; round < ROUNDS; round++) {
    for (const g of groups) {
      const ref = await load(g.reference);
      keep(ref);
      for (const m of g.measures) keep({ ...(await load(m)), reference: g.reference.name, ratio: 0 });
    }
  }
  const rows: Row[] = [];
  for (const g of groups) {
    const refs = results.get(g.reference.name)!;
    const combine = (name: string, extra: Partial<Row> = {}): Row => {
      const rs = results.get(name)!;
      return {
        name,
        rps: median(rs.map((r) => r.rps)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        errors: rs.reduce((n, r) => n + r.errors, 0),
        others: median(rs.map((r) => r.others)),
        ratio: median(rs.map((r, i) => r.rps / refs[i]!.rps)),
        ...extra,
      };
    };
    rows.push(combine(g.reference.name, { target: 'reference' }));
    for (const m of g.measures) {
      const row = combine(m.name, { reference: g.reference.name });
      const ratioTarget = m.target === 'identity' ? TARGET.identityRatio : TARGET.listRatio;
      const checks = [`≥ ${ratioTarget * 100}%: ${row.ratio! >= ratioTarget ? 'met' : 'NOT met'}`];
      if (m.target === 'list20') checks.push(`p99 ≤ ${TARGET.p99Ms} ms: ${row.p99 <= TARGET.p99Ms ? 'met' : 'NOT met'}`);
      rows.push({ ...row, target: checks.join('; ') });
    }
  }
  return rows;
}

async function main() {
  const loadBefore = os.loadavg();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-reads-'));
  const berth = await startBerth(dataDir);
  ours.push(berth.pid);
  let bare: Awaited<ReturnType<typeof startBare>> | undefined;
  let db: mariadb.Connection | undefined;
  const memory: string[] = [];
  try {
    // Idle after start-up: listening, then left alone. V8 gives memory back once it sees the
    // process idle (its memory reducer, some 20-40 s in): both moments are shown, the first
    // is held to the target.
    const listening = performance.now();
    const idleAt = async (seconds: number, target: boolean) => {
      await new Promise((resolve) => setTimeout(resolve, listening + seconds * 1000 - performance.now()));
      const { rss } = rssMb(berth.pid);
      const verdict = target ? `≤ ${TARGET.idleRssMb}: ${rss <= TARGET.idleRssMb ? 'met' : 'NOT met'}` : '';
      return `| idle, ${seconds} s after start-up | ${rss.toFixed(0)} | ${verdict} |`;
    };
    memory.push(await idleAt(5, true), await idleAt(45, false));

    const socketPath = path.join(dataDir, 'mariadb', 'mysqld.sock');
    ours.push(Number(fs.readFileSync(path.join(dataDir, 'mariadb', 'mariadbd.pid'), 'utf8').trim()));
    db = await mariadb.createConnection({ socketPath, user: 'root', database: 'berth' });
    await post(`${berth.url}/v1/register`, { username: 'bench', password: PASSWORD });
    const [user] = (await db.query("SELECT id, username FROM users WHERE username = 'bench'")) as { id: string; username: string }[];
    const tokens = await accessTokens(berth.url, 'bench', PASSWORD, CONNECTIONS);

    // Stage 1: 20 machines, 50 reservations of the bench user holding two machines each.
    const first = await seedMachines(db, Array.from({ length: 20 }, (_, i) => `node-${String(i).padStart(3, '0')}`));
    await seedReservations(db, user!, first, 50, 2);
    bare = await startBare(socketPath);
    ours.push(bare.pid);
    const as = (pathName: string, method: 'GET' | 'POST' = 'GET') => ({ url: berth.url, requests: rotating(method, pathName, tokens) });
    const rows = await rounds([
      {
        reference: { name: 'bare route `{status: ok}` (reference)', url: bare.url },
        measures: [
          { name: 'GET /v1/whoami', ...as('/v1/whoami'), target: 'identity' },
          { name: 'POST /v1/token/verify', ...as('/v1/token/verify', 'POST'), target: 'identity' },
        ],
      },
      {
        reference: { name: 'raw SELECT, 20 machines (reference)', url: `${bare.url}/machines` },
        measures: [{ name: 'GET /v1/machines (20)', ...as('/v1/machines'), target: 'list20' }],
      },
      {
        reference: { name: 'raw SELECT, pool counts (reference)', url: `${bare.url}/pool` },
        measures: [{ name: 'GET /v1/pool', ...as('/v1/pool'), target: 'list' }],
      },
      {
        reference: { name: 'raw SELECT, 50 reservations with machines (reference)', url: `${bare.url}/reservations?user=${user!.id}` },
        measures: [{ name: 'GET /v1/reservations (50)', ...as('/v1/reservations'), target: 'list' }],
      },
    ]);

    // Stage 2: 200 machines in all, 20 of them VMs (records only: no QEMU runs).
    await seedMachines(db, Array.from({ length: 160 }, (_, i) => `node-${String(i + 20).padStart(3, '0')}`));
    await seedVms(db, 20);
    rows.push(
      ...(await rounds([
        {
          reference: { name: 'raw SELECT, 200 machines (reference)', url: `${bare.url}/machines?limit=200` },
          measures: [{ name: 'GET /v1/machines?limit=200 (200)', ...as('/v1/machines?limit=200'), target: 'list' }],
        },
        {
          reference: { name: 'raw SELECT, 20 VMs (reference)', url: `${bare.url}/vms` },
          measures: [{ name: 'GET /v1/vms (20)', ...as('/v1/vms'), target: 'list20' }],
        },
      ])),
    );
    const end = rssMb(berth.pid);
    memory.push(`| at the end of the run | ${end.rss.toFixed(0)} | ≤ ${TARGET.endRssMb}: ${end.rss <= TARGET.endRssMb ? 'met' : 'NOT met'} |`);
    memory.push(`| peak during the run (VmHWM) | ${end.peak.toFixed(0)} | |`);

    const header = '| measurement | req/s | p50 ms | p99 ms | vs reference | errors | others\' load (cores) | target |\n|---|---:|---:|---:|---:|---:|---:|---|';
    const lines = rows.map(
      (r) =>
        `| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.target === 'reference' ? '100%' : `${(r.ratio! * 100).toFixed(1)}%`} | ${r.errors} | ${r.others.toFixed(2)} | ${r.target === 'reference' ? '' : r.target} |`,
    );
    const table = [header, ...lines].join('\n');
    const memoryTable = ['| berth process resident memory (VmRSS) | MB | target |', '|---|---:|---|', ...memory].join('\n');
    const loadAfter = os.loadavg();
    const machine =
      `${new Date().toISOString()}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}. ` +
      `Load average (1/5/15 min) ${loadBefore.map((l) => l.toFixed(2)).join('/')} before the run, ${loadAfter.map((l) => l.toFixed(2)).join('/')} after it (these include the run itself).`;
    console.log(`${machine}\n\n${table}\n\n${memoryTable}`);
    const doc =
      `# bench/reads — latest results\n\n${machine}\n\n` +
      `${SECONDS} s per measurement, ${CONNECTIONS} connections, autocannon in the bench process. Each berth row and its reference are medians of ` +
      `${ROUNDS} interleaved rounds; the ratio is the median of the per-round ratios to the reference measured just before. "Others' load" is the CPU ` +
      `that processes other than berth, its MariaDB, the reference and the bench used meanwhile (other developers' work), in cores of the 2.\n\n` +
      `berth is the compiled server as \`npm start\` serves it (\`scripts/serve.sh\`) on its embedded MariaDB, LOG_LEVEL=warn, tokens of 50 sessions of ` +
      `one user in rotation. The references are bare Fastify routes in their own process running the SELECT berth's list runs through the raw mariadb ` +
      `driver (pool of 10, as berth's) and returning the rows with Fastify's default JSON serializer; whoami and verify are compared with a bare route ` +
      `that answers \`{"status":"ok"}\`, as in bench/identity. Rows are written into the database directly (bench/reads/seed.ts): 20 machines and 50 ` +
      `reservations of two machines each, then 180 more machines and 20 VM records with their machines (200 machines in all).\n\n` +
      `${table}\n\n${memoryTable}\n`;
    fs.writeFileSync(path.join(here, 'RESULTS.md'), `${doc}\n${notes()}`);
  } finally {
    await db?.end();
    bare?.stop();
    await berth.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The hand-written part of RESULTS.md (what the figures mean), kept across runs. */
function notes(): string {
  const file = path.join(here, 'RESULTS.md');
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const i = old.indexOf('## Notes');
  return i === -1 ? '## Notes\n\n(what the figures show, written by hand)\n' : old.slice(i);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
