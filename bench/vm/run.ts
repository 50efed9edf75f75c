// bench/vm: VMs on berth as a real process, the cold path and the snapshot path side by
// side in one run, with references taken in the same run (the same kernel, initramfs and
// base booted by hand; the image as a Docker container).
//   npm run bench:vm
// Part A, berth with BERTH_VM_SNAPSHOTS=off: a Dockerfile to a ready image (a new layer),
// the old conversion (container export) as a reference, POST /v1/vms → running (5 one at a
// time), reset → running (5), 4 VMs at once, a reservation of a running VM and its release,
// and what 4 idle VMs cost (PSS after 60 s, CPU over 20 s).
// Part B, the same data directory with snapshots on: the same Dockerfile under another
// name (its engine image was converted already), its template, then the same steps as
// clones, with each restore's phases from berth's log. Targets at the end; a target out of
// reach shows its floor and what the floor is made of.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { encrypt } from 'unixcrypt';
import { freePort } from '../../src/infra/ports.js';
import { generateSshKeyPair, parseHostKey, sshConnect, sshProveHostKey } from '../../src/infra/ssh.js';
import { prepareBootArtifacts } from '../../src/infra/vm/boot-artifacts.js';
import { bootVm, stopVm, type VmSpec } from '../../src/infra/vm/qemu.js';
import { createVmRuntime } from '../../src/infra/vm/runtime.js';
import { startVm } from '../../src/infra/vm/start.js';
import { createTemplates } from '../../src/infra/vm/template.js';
import { createAccount } from '../../src/modules/reservations/accounts.js';
import { sshRun } from '../../test/helpers/ssh-machines.js';
import { callJson, startServer, type ServerProcess } from '../../test/helpers/server-process.js';

const run = promisify(execFile);
const RUNS = 5;
const AT_ONCE = 4;
const POLL_MS = 25;
const BOOT_TIMEOUT_MS = 180_000;
const BUILD_TIMEOUT_MS = 300_000;
const TEMPLATE_TIMEOUT_MS = 300_000;
const IDLE_AFTER_MS = 60_000;
const CPU_WINDOW_MS = 20_000;
const PASSWORD = 'a benchmark passphrase';
const BASE_IMAGE = 'berth/debian-sshd:bookworm';
const SHAPE = '1cpu-512mb';
const TARGET = { bootMs: 1000, resetMs: 1000, atOnceMs: 2500, reservationMs: 1500, pssMb: 150, cpuPct: 1, sharedImageMs: 1500 };
const here = path.dirname(new URL(import.meta.url).pathname);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (x: number | null | undefined) => (x === null || x === undefined || Number.isNaN(x) ? '–' : x.toFixed(0));
const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)}%`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const loadNow = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const met = (ok: boolean) => (ok ? 'met' : 'NOT met');

/** One start (create or reset) as seen from outside, in ms from the request. */
interface Start {
  vm: string;
  answered: number;
  qemu: number | null;
  running: number;
  bootMs: number | null;
  mode: string | null;
  /** Restores: berth's own phases (launch, restore, identity, sshd), from its log. */
  phases: Record<string, number> | null;
}

interface Image {
  id: string;
  name: string;
  total: number;
  buildMs: number;
  log: string;
  readMs: number | null;
  ext4Ms: number | null;
  how: 'layers' | 'export' | 'shared';
  mib: number | null;
}

interface Idle {
  pssMb: number[];
  cpuPct: number[];
}

function livePid(dir: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'qemu.pid'), 'utf8').trim());
    return pid > 0 && fs.existsSync(`/proc/${pid}`) ? pid : null;
  } catch {
    return null;
  }
}

/** Until the port's server sends an SSH banner (QEMU's forwarder accepts before the guest listens). */
async function waitForBanner(port: number, deadline: number): Promise<void> {
  for (;;) {
    const got = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      const timer = setTimeout(() => done(false), 1000);
      function done(ok: boolean) {
        clearTimeout(timer);
        sock.destroy();
        resolve(ok);
      }
      sock.once('data', (d) => done(d.toString().startsWith('SSH-')));
      sock.once('error', () => done(false));
      sock.once('close', () => done(false));
    });
    if (got) return;
    if (Date.now() > deadline) throw new Error(`no SSH banner on port ${port}`);
    await sleep(POLL_MS);
  }
}

/** CPU time (user + system) of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
}

const pssMb = (pid: number) => Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))![1]) / 1024;

/** berth's log lines of restores ("restored a VM from its template"), in order. */
function restoreLog(server: ServerProcess): { vm: string; phases: Record<string, number> }[] {
  return server
    .output()
    .split('\n')
    .filter((l) => l.includes('restored a VM from its template'))
    .map((l) => JSON.parse(l) as { vm: string; phases: Record<string, number> });
}

async function main() {
  execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['scripts/build-base-image.sh', path.resolve('.data')], { stdio: 'inherit' });
  const cacheDir = path.resolve('.data/cache');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-vm-'));
  const uptimeAtStart = execFileSync('uptime').toString().trim();
  const benchStarted = performance.now();
  const lines: string[] = [];
  const say = (s: string) => {
    console.log(s);
    lines.push(s);
  };
  const nonce = randomBytes(8).toString('hex');
  const dockerfile = `FROM ${BASE_IMAGE}\nRUN echo ${nonce} > /etc/bench-nonce\n`;
  const vmDir = (id: string) => path.join(dataDir, 'vms', id);
  let server!: ServerProcess;
  let admin = '';
  let user = '';
  const vmIds = new Set<string>();
  const rawDirs: string[] = [];
  const containers: string[] = [];
  const call = (method: string, url: string, token?: string, body?: unknown) => callJson(server.url, method, url, token, body);
  const text = async (url: string, token: string) => (await fetch(`${server.url}${url}`, { headers: { authorization: `Bearer ${token}` } })).text();

  const startBerth = async (snapshots: boolean) => {
    const started = performance.now();
    server = await startServer({
      BERTH_DATA_DIR: dataDir,
      BERTH_CACHE_DIR: cacheDir,
      ADMIN_PASSWORD: PASSWORD,
      BERTH_VM_SNAPSHOTS: snapshots ? 'on' : 'off',
      // Restores log their phases at info.
      LOG_LEVEL: snapshots ? 'info' : 'warn',
    });
    admin = (await call('POST', '/v1/token', undefined, { username: 'admin', password: PASSWORD })).body.access_token;
    for (const deadline = Date.now() + 120_000; ; await sleep(100)) {
      const vm = (await call('GET', '/readyz')).body?.capabilities?.vm;
      if (vm?.error) throw new Error(`VMs unavailable: ${JSON.stringify(vm)}`);
      if (vm?.accel) return { accel: vm.accel as string, readyMs: performance.now() - started };
      if (Date.now() > deadline) throw new Error(`no accelerator after 2 min: ${JSON.stringify(vm)}`);
    }
  };

  const buildImage = async (name: string): Promise<Image> => {
    const started = performance.now();
    const r = await call('POST', '/v1/images', admin, { name, dockerfile });
    if (r.status !== 202) throw new Error(`POST /v1/images: ${r.status} ${JSON.stringify(r.body)}`);
    const id = r.body.id as string;
    let image: any;
    for (const deadline = Date.now() + BUILD_TIMEOUT_MS; ; await sleep(POLL_MS)) {
      image = (await call('GET', `/v1/images/${id}`, admin)).body;
      if (image.status !== 'building') break;
      if (Date.now() > deadline) throw new Error(`${name} still building after ${BUILD_TIMEOUT_MS} ms`);
    }
    const total = performance.now() - started;
    const log = await text(`/v1/images/${id}/log`, admin);
    if (image.status !== 'ready') throw new Error(`${name} ${image.status}: ${image.error}\n${log}`);
    const made = /berth: (mounted the engine's layers|exported the filesystem) in (\d+) ms; made a (\d+) MiB ext4 base in (\d+) ms/.exec(log);
    const shared = /berth: the engine image is that of .*, converted already: its base is shared, nothing exported \((\d+) ms\)/.exec(log);
    if (!made && !shared) throw new Error(`no conversion line in the build log of ${name}:\n${log}`);
    return {
      id,
      name,
      total,
      buildMs: image.build_ms,
      log,
      readMs: made ? Number(made[2]) : shared ? Number(shared[1]) : null,
      ext4Ms: made ? Number(made[4]) : null,
      how: shared ? 'shared' : made![1]!.startsWith('mounted') ? 'layers' : 'export',
      mib: made ? Number(made[3]) : null,
    };
  };

  /** Polls until every VM runs; `oldPids`: for a reset, the QEMU of the boot before. */
  const track = async (ids: string[], started: number, answered: Map<string, number>, oldPids = new Map<string, number | null>()): Promise<Start[]> => {
    const qemu = new Map<string, number>();
    const done = new Map<string, Start>();
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    while (done.size < ids.length) {
      const pending = ids.filter((id) => !done.has(id));
      const rows: any[] =
        pending.length === 1
          ? [(await call('GET', `/v1/vms/${pending[0]}`, admin)).body]
          : (await call('GET', `/v1/vms?limit=200`, admin)).body.items.filter((v: any) => pending.includes(v.id));
      const now = performance.now() - started;
      for (const id of pending) {
        const pid = livePid(vmDir(id));
        if (!qemu.has(id) && pid !== null && pid !== oldPids.get(id)) qemu.set(id, now);
        const row = rows.find((v) => v.id === id);
        if (row?.state === 'failed' || row?.state === 'stopped') {
          throw new Error(`VM ${row.name} is ${row.state}: ${row.state_reason}\nconsole:\n${await text(`/v1/vms/${id}/console`, admin)}\nberth:\n${server.output().slice(-4000)}`);
        }
        if (row?.state === 'running' && row.machine_status === 'available') {
          done.set(id, { vm: row.name, answered: answered.get(id) ?? NaN, qemu: qemu.get(id) ?? null, running: now, bootMs: row.boot_ms, mode: row.start_mode, phases: null });
        }
      }
      if (done.size < ids.length && Date.now() > deadline) throw new Error(`not running after ${BOOT_TIMEOUT_MS} ms: ${pending.join(', ')}\n${server.output().slice(-4000)}`);
      await sleep(POLL_MS);
    }
    return ids.map((id) => done.get(id)!);
  };
  /** Attaches berth's logged restore phases (the latest line for each VM name after `seen`). */
  const withPhases = (starts: Start[], seen: number) => {
    const logged = restoreLog(server).slice(seen);
    for (const s of starts) s.phases = [...logged].reverse().find((l) => l.vm === s.vm)?.phases ?? null;
    return starts;
  };

  const createVm = async () => {
    const started = performance.now();
    const r = await call('POST', '/v1/vms', admin, { image: imageName });
    if (r.status !== 202) throw new Error(`POST /v1/vms: ${r.status} ${JSON.stringify(r.body)}`);
    vmIds.add(r.body.id);
    return { id: r.body.id as string, started, answered: performance.now() - started };
  };
  const deleteVm = async (id: string) => {
    const r = await call('DELETE', `/v1/vms/${id}`, admin);
    if (r.status !== 204) throw new Error(`DELETE /v1/vms/${id}: ${r.status} ${JSON.stringify(r.body)}`);
    vmIds.delete(id);
  };
  let imageName = '';

  /** The VM steps of one part: boots, resets, 4 at once, a reservation and its release, idle cost. */
  const vmSteps = async (label: string) => {
    const boots: Start[] = [];
    let kept = '';
    for (let i = 0; i < RUNS; i++) {
      const seen = restoreLog(server).length;
      const { id, started, answered } = await createVm();
      const [b] = withPhases(await track([id], started, new Map([[id, answered]])), seen);
      boots.push(b!);
      console.log(`${label} boot ${i + 1}: ${ms(b!.running)} ms (${b!.mode}; QEMU ${ms(b!.qemu)}; berth boot_ms ${ms(b!.bootMs)})`);
      if (i < RUNS - 1) await deleteVm(id);
      else kept = id;
    }
    const resets: Start[] = [];
    for (let i = 0; i < RUNS; i++) {
      const seen = restoreLog(server).length;
      const oldPid = livePid(vmDir(kept));
      const started = performance.now();
      const r = await call('POST', `/v1/vms/${kept}/reset`, admin);
      const answered = performance.now() - started;
      if (r.status !== 202) throw new Error(`reset: ${r.status} ${JSON.stringify(r.body)}`);
      const [b] = withPhases(await track([kept], started, new Map([[kept, answered]]), new Map([[kept, oldPid]])), seen);
      resets.push(b!);
      console.log(`${label} reset ${i + 1}: ${ms(b!.running)} ms (${b!.mode})`);
    }
    await deleteVm(kept);

    const seen = restoreLog(server).length;
    const startedAll = performance.now();
    const posted = await Promise.all(
      Array.from({ length: AT_ONCE }, async () => {
        const r = await call('POST', '/v1/vms', admin, { image: imageName });
        if (r.status !== 202) throw new Error(`POST /v1/vms: ${r.status} ${JSON.stringify(r.body)}`);
        vmIds.add(r.body.id);
        return { id: r.body.id as string, answered: performance.now() - startedAll };
      }),
    );
    const ids = posted.map((p) => p.id);
    const together = withPhases(await track(ids, startedAll, new Map(posted.map((p) => [p.id, p.answered]))), seen);
    const allRunning = Math.max(...together.map((b) => b.running));
    const runningAt = performance.now();
    console.log(`${label} ${AT_ONCE} at once: all running after ${ms(allRunning)} ms`);

    // A user reserves one of them (an account made inside it), logs in, and releases it.
    const reserveStarted = performance.now();
    const res = await call('POST', '/v1/reservations', user, { machines: [together[0]!.vm] });
    const reservationMs = performance.now() - reserveStarted;
    if (res.status !== 201) throw new Error(`POST /v1/reservations: ${res.status} ${JSON.stringify(res.body)}`);
    const vm0 = (await call('GET', `/v1/vms/${ids[0]}`, admin)).body;
    const login = await sshRun({ host: '127.0.0.1', port: vm0.ssh.port, username: res.body.account.username, password: res.body.account.password }, 'id -un');
    if (login.stdout.trim() !== res.body.account.username) throw new Error(`the reserved account does not work: ${JSON.stringify(login)}`);
    const oldPid = livePid(vmDir(ids[0]!));
    const releaseStarted = performance.now();
    const rel = await call('DELETE', `/v1/reservations/${res.body.id}`, user);
    const releaseAnswered = performance.now() - releaseStarted;
    if (rel.status !== 200) throw new Error(`release: ${rel.status} ${JSON.stringify(rel.body)}`);
    const [back] = await track([ids[0]!], releaseStarted, new Map([[ids[0]!, releaseAnswered]]), new Map([[ids[0]!, oldPid]]));
    console.log(`${label} reservation answered in ${ms(reservationMs)} ms; released → back in the pool ${ms(back!.running)} ms (${back!.mode})`);

    // Idle cost: the others of the group, untouched since they started.
    const idlePids = ids.slice(1).map((id) => livePid(vmDir(id))!);
    const backPid = livePid(vmDir(ids[0]!))!;
    await sleep(Math.max(0, runningAt + IDLE_AFTER_MS - performance.now()));
    const cpu0 = idlePids.map(cpuSeconds);
    await sleep(CPU_WINDOW_MS);
    const cpu1 = idlePids.map(cpuSeconds);
    const idle: Idle = {
      pssMb: idlePids.map(pssMb),
      cpuPct: idlePids.map((_, i) => (100 * (cpu1[i]! - cpu0[i]!)) / (CPU_WINDOW_MS / 1000)),
    };
    // The released VM too, a clean one again (measured at the same moment, less idle time behind it).
    const backPss = pssMb(backPid);
    console.log(`${label} idle: PSS ${idle.pssMb.map((x) => x.toFixed(0)).join(', ')} MB; CPU ${idle.cpuPct.map((x) => x.toFixed(2)).join(', ')}%`);
    for (const id of ids) await deleteVm(id);
    return { boots, resets, together, allRunning, reservationMs, releaseAnswered, back: back!, idle, backPss };
  };

  try {
    // ======== Part A: cold boots (snapshots off) =====================================================
    const a = await startBerth(false);
    console.log(`berth up with VMs on ${a.accel} after ${ms(a.readyMs)} ms`);
    await call('POST', '/v1/register', undefined, { username: 'bencher', password: PASSWORD });
    user = (await call('POST', '/v1/token', undefined, { username: 'bencher', password: PASSWORD })).body.access_token;
    const cold = await buildImage(`bench-vm-${nonce}`);
    imageName = cold.name;
    console.log(`image (new layer): ${ms(cold.total)} ms (${cold.how})`);

    // The conversion berth did before: a container's export unpacked, then mkfs.ext4 (a reference).
    const exportRef = await (async () => {
      const root = fs.mkdtempSync(path.join(dataDir, 'export-ref-'));
      const started = performance.now();
      const cid = (await run('docker', ['create', '--network', 'none', `berth/image-${cold.id}:latest`, '/bin/true'])).stdout.trim();
      await run('bash', ['-c', `docker export ${cid} | tar -C ${root} --numeric-owner -xf -`]);
      await run('docker', ['rm', '-f', cid]);
      const exportMs = performance.now() - started;
      const ext4Started = performance.now();
      const content = Number((await run('du', ['-sb', root])).stdout.split('\t')[0]);
      const out = path.join(dataDir, 'export-ref.ext4');
      await run('truncate', ['-s', String(Math.ceil((content * 1.3 + 64 * 1048576) / 1048576) * 1048576), out]);
      await run('mkfs.ext4', ['-q', '-F', '-d', root, '-m', '0', out]);
      const ext4Ms = performance.now() - ext4Started;
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(out, { force: true });
      return { exportMs, ext4Ms };
    })();
    console.log(`old conversion (export + mkfs): ${ms(exportRef.exportMs)} + ${ms(exportRef.ext4Ms)} ms`);
    const coldSteps = await vmSteps('cold');
    await server.stop();

    // ======== Part B: snapshots on, the same data directory =================================================
    const b = await startBerth(true);
    const shared = await buildImage(`bench-vm-${nonce}-again`);
    imageName = shared.name;
    console.log(`image (engine image converted already): ${ms(shared.total)} ms (${shared.how})`);
    const templateStarted = performance.now();
    const meta = path.join(dataDir, 'images', shared.id, 'templates', SHAPE, 'template.json');
    while (!fs.existsSync(meta)) {
      if (performance.now() - templateStarted > TEMPLATE_TIMEOUT_MS) throw new Error(`no template after ${TEMPLATE_TIMEOUT_MS} ms:\n${server.output().slice(-4000)}`);
      await sleep(100);
    }
    const template = { readyAfter: shared.total + performance.now() - templateStarted, ...(JSON.parse(fs.readFileSync(meta, 'utf8')) as { bootMs: number; snapshotMs: number; stateBytes: number }) };
    const templateDir = path.dirname(meta);
    const templateDisk = Object.fromEntries(['memory', 'state', 'overlay.qcow2'].map((f) => [f, fs.statSync(path.join(templateDir, f)).blocks * 512]));
    console.log(`template ready ${ms(template.readyAfter)} ms after the POST (boot ${template.bootMs} ms, snapshot ${template.snapshotMs} ms)`);
    const snapSteps = await vmSteps('snapshot');
    await server.stop();

    // ======== What a clone's first minutes cost, step by step: the bench's own clones of berth's template ==
    // (berth does the same steps; here each is timed alone, with the QEMU's CPU time.)
    // berth ran with BERTH_VM_EGRESS unset (none): its template is of that policy.
    const floorRuntime = createVmRuntime({ cacheDir, accel: 'tcg', egress: 'none' });
    const floorTemplates = createTemplates({ runtime: floorRuntime, dirOf: (id) => path.join(dataDir, 'images', id, 'templates'), bootTimeoutMs: BOOT_TIMEOUT_MS, log: { info: () => {}, warn: () => {} } });
    const floorRt = await floorRuntime.get();
    const floors: Record<string, number>[] = [];
    for (let i = 0; i < 3; i++) {
      const dir = path.join(dataDir, `floor-${i}`);
      rawDirs.push(dir);
      const hostKey = generateSshKeyPair();
      const rootKey = generateSshKeyPair();
      const spec = {
        imageId: shared.id, dir, name: `floor-${i}`, kernel: floorRt.kernel, initramfs: floorRt.initramfs, base: path.join(dataDir, 'images', shared.id, 'base.ext4'),
        sshBind: '127.0.0.1', sshPort: await freePort(), egress: 'none' as const, cpus: 1, memoryMb: 512, accel: floorRt.accel, hostKey, authorizedKeys: [rootKey.public], command: null,
      };
      const started = performance.now();
      const s = await startVm(spec, { templates: floorTemplates, log: { info: () => {}, warn: () => {} } });
      if (s.mode !== 'restore') throw new Error(`the floor clone booted cold: ${s.reason}`);
      const pid = livePid(dir)!;
      const cpuAt = () => cpuSeconds(pid) * 1000;
      const f: Record<string, number> = { start: performance.now() - started, startCpu: cpuAt(), ...s.phases! };
      const loginAs = () =>
        sshConnect({ host: '127.0.0.1', port: spec.sshPort, username: 'root', privateKey: rootKey.private, hostKeyFingerprint: parseHostKey(hostKey.public) }, { connectTimeoutMs: 20_000, commandTimeoutMs: 60_000 });
      const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
        const [t0, c0] = [performance.now(), cpuAt()];
        const out = await work();
        [f[name], f[`${name}Cpu`]] = [performance.now() - t0, cpuAt() - c0];
        return out;
      };
      await timed('kex', () => sshProveHostKey({ host: '127.0.0.1', port: spec.sshPort, hostKeyFingerprint: parseHostKey(hostKey.public)! }, 20_000));
      (await timed('login1', loginAs)).close();
      const session = await timed('login2', loginAs);
      // As a reservation does: the password hashed by berth (provisioning.ts).
      const passwordHash = encrypt('a floor password 1', '$6');
      await timed('account', () => createAccount(session, { username: 'floor', reservationId: randomBytes(8).toString('hex'), passwordHash, grantSudo: true }));
      session.close();
      floors.push(f);
      await stopVm(dir);
    }
    await floorTemplates.close();

    // ======== References: the same kernel, initramfs and base by hand; the image in Docker ===============
    const artifacts = await prepareBootArtifacts(cacheDir);
    const key = generateSshKeyPair();
    const raws: { banner: number; login: number }[] = [];
    const base = path.join(dataDir, 'images', cold.id, 'base.ext4');
    for (let i = 0; i < RUNS; i++) {
      const hostKey = generateSshKeyPair();
      const dir = path.join(dataDir, `raw-${i}`);
      rawDirs.push(dir);
      const spec: VmSpec = {
        dir,
        name: `raw-${i}`,
        kernel: artifacts.kernel,
        initramfs: artifacts.initramfs,
        base,
        sshBind: '127.0.0.1',
        sshPort: await freePort(),
        egress: 'none',
        cpus: 1,
        memoryMb: 512,
        accel: 'tcg',
        hostKey: { private: hostKey.private, public: hostKey.public },
        authorizedKeys: [key.public],
      };
      const started = performance.now();
      await bootVm(spec);
      const deadline = Date.now() + BOOT_TIMEOUT_MS;
      await waitForBanner(spec.sshPort, deadline);
      const banner = performance.now() - started;
      const session = await sshConnect(
        { host: '127.0.0.1', port: spec.sshPort, username: 'root', privateKey: key.private, hostKeyFingerprint: parseHostKey(hostKey.public) },
        { connectTimeoutMs: 10_000, commandTimeoutMs: 10_000 },
      );
      session.close();
      raws.push({ banner, login: performance.now() - started });
      await stopVm(dir);
    }
    const dockerRuns: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const port = await freePort();
      const name = `berth-bench-vm-ref-${randomBytes(3).toString('hex')}`;
      const started = performance.now();
      await run('docker', [
        'run', '-d', '--name', name, '--network', 'host', `berth/image-${cold.id}:latest`, 'sh', '-c',
        `mkdir -p /run/sshd && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && exec /usr/sbin/sshd -D -p ${port} -o ListenAddress=127.0.0.1 -o HostKey=/etc/ssh/ssh_host_ed25519_key`,
      ]);
      containers.push(name);
      await waitForBanner(port, Date.now() + 60_000);
      dockerRuns.push(performance.now() - started);
      await run('docker', ['rm', '-f', name]);
      containers.pop();
    }
    const loadAtEnd = loadNow();

    // ======== Report ========================================================================================
    const byRunning = (xs: Start[]) => [...xs].sort((x, y) => x.running - y.running)[Math.floor(xs.length / 2)]!;
    const cb = byRunning(coldSteps.boots);
    const cr = byRunning(coldSteps.resets);
    const sb = byRunning(snapSteps.boots);
    const sr = byRunning(snapSteps.resets);
    const rawLogin = median(raws.map((r) => r.login));
    const dockerMed = median(dockerRuns);
    const startRow = (label: string, s: Start) =>
      `| ${label} | ${s.mode ?? '–'} | ${ms(s.answered)} | ${ms(s.qemu)} | ${s.phases ? ['launch', 'restore', 'identity', 'sshd'].map((k) => ms(s.phases![k])).join(' / ') : '–'} | **${ms(s.running)}** | ${ms(s.bootMs)} |`;
    /** A restore's time from the request: POST answered, its phases, and the rest (berth's SSH key exchange, recording, this bench's polling). */
    const parts = (s: Start) => {
      const p = s.phases ?? {};
      const launch = p.launch ?? 0;
      const restore = p.restore ?? 0;
      const identity = p.identity ?? 0;
      const sshd = p.sshd ?? 0;
      const rest = s.running - s.answered - launch - restore - identity - sshd;
      return { answered: s.answered, launch, restore, identity, sshd, rest };
    };
    const shareLine = (s: Start) => {
      const x = parts(s);
      return (
        `POST/reset answered ${ms(x.answered)} (${pct(x.answered, s.running)}) + QEMU started, sockets connected ${ms(x.launch)} (${pct(x.launch, s.running)}) + ` +
        `restore (device state loaded, running) ${ms(x.restore)} (${pct(x.restore, s.running)}) + identity (sent, applied: RNG, keys, clock, names) ${ms(x.identity)} (${pct(x.identity, s.running)}) + ` +
        `sshd (already listening; port forwarded) ${ms(x.sshd)} (${pct(x.sshd, s.running)}) + SSH key exchange proving the pinned key, recording, polling ${ms(x.rest)} (${pct(x.rest, s.running)})`
      );
    };
    const avg = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

    say(`# bench/vm — latest results`);
    say('');
    say(`${new Date().toISOString()}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ` +
      `${execFileSync('qemu-system-x86_64', ['--version']).toString().split('\n')[0]}.`);
    say(`Machine load: \`${uptimeAtStart}\` at the start; load average ${loadAtEnd} at the end (other developers share these 2 cores; figures taken under load are noisy).`);
    say(`berth as a process (\`src/server.ts\`) on its embedded MariaDB, BERTH_VM_ACCEL unset (auto): berth picked \`${a.accel}\` (part A) / \`${b.accel}\` (part B). ` +
      `VMs: 1 vCPU, 512 MiB (berth's defaults). Command: \`npm run bench:vm\`.`);
    say(`Times are from the request, seen by polling every ${POLL_MS} ms (GET /v1/vms/{id}, the VM's qemu.pid): each is up to ~${POLL_MS} ms late. ` +
      `"running" = state running and the machine available, i.e. berth's SSH key exchange with the VM proved its pinned host key (the VM's sshd signed with it).`);
    say('');
    say(`## Dockerfile → ready image`);
    say('');
    say(`\`FROM ${BASE_IMAGE}\` + \`RUN echo <nonce> > /etc/bench-nonce\`; part B builds the same Dockerfile under another name.`);
    say('');
    say('| image | POST → ready ms | docker build | filesystem | ext4 (du + mkfs) | the rest |');
    say('|---|---:|---:|---:|---:|---:|');
    for (const [label, im] of [['new layer (part A)', cold], ['engine image converted already (part B)', shared]] as const) {
      const rest = im.total - im.buildMs - (im.readMs ?? 0) - (im.ext4Ms ?? 0);
      const how = im.how === 'layers' ? "engine's layers mounted" : im.how === 'shared' ? 'base shared (hard link)' : 'container exported';
      say(`| ${label} | **${ms(im.total)}** | ${ms(im.buildMs)} (${pct(im.buildMs, im.total)}) | ${how}: ${ms(im.readMs)} (${pct(im.readMs ?? 0, im.total)}) | ` +
        `${im.ext4Ms === null ? '–' : `${ms(im.ext4Ms)} (${pct(im.ext4Ms, im.total)})`} | ${ms(rest)} (${pct(rest, im.total)}) |`);
    }
    say(`| reference: the old conversion of the part A image (container export + unpack, then du + mkfs) | | | export ${ms(exportRef.exportMs)} | ${ms(exportRef.ext4Ms)} | |`);
    say('');
    const newConv = (cold.readMs ?? 0) + (cold.ext4Ms ?? 0);
    const oldConv = exportRef.exportMs + exportRef.ext4Ms;
    say(`Conversion of a new image: ${ms(newConv)} ms now (layers ${ms(cold.readMs)}, ext4 ${ms(cold.ext4Ms)}) vs ${ms(oldConv)} ms by export (${(oldConv / newConv).toFixed(1)}×); ` +
      `the export step's share of it was ${pct(exportRef.exportMs, oldConv)}, reading the layers' is ${pct(cold.readMs ?? 0, newConv)}. ` +
      `"The rest" = the request, \`docker inspect\`, recording, and this bench's ${POLL_MS} ms polling.`);
    say('');
    say(`Template (part B image, ${SHAPE}): ready ${ms(template.readyAfter)} ms after its POST /v1/images, in the background (its boot ${template.bootMs} ms, the snapshot ${template.snapshotMs} ms, ` +
      `${Math.round(template.stateBytes / 1024)} KB of device state); on disk: memory ${Math.round(templateDisk.memory! / 1048576)} MiB allocated of 512, ` +
      `overlay ${Math.round(templateDisk['overlay.qcow2']! / 1024)} KB.`);
    say('');
    say(`## POST /v1/vms → running, reset → running`);
    say('');
    say('| run | start | answered | QEMU up | restore phases: launch / restore / identity / sshd | running | berth boot_ms |');
    say('|---|---|---:|---:|---|---:|---:|');
    for (const [label, steps] of [['cold', coldSteps], ['snapshot', snapSteps]] as const) {
      steps.boots.forEach((s, i) => say(startRow(`${label} boot ${i + 1}`, s)));
      steps.resets.forEach((s, i) => say(startRow(`${label} reset ${i + 1}`, s)));
      steps.together.forEach((s, i) => say(startRow(`${label}, ${AT_ONCE} at once: VM ${i + 1}`, s)));
    }
    say('');
    say('| step | cold (median) | snapshot (median) | cold / snapshot |');
    say('|---|---:|---:|---:|');
    say(`| POST /v1/vms → running | ${ms(cb.running)} | **${ms(sb.running)}** | ${(cb.running / sb.running).toFixed(1)}× |`);
    say(`| reset → running | ${ms(cr.running)} | **${ms(sr.running)}** | ${(cr.running / sr.running).toFixed(1)}× |`);
    say(`| ${AT_ONCE} VMs at once, all running | ${ms(coldSteps.allRunning)} | **${ms(snapSteps.allRunning)}** | ${(coldSteps.allRunning / snapSteps.allRunning).toFixed(1)}× |`);
    say(`| a reservation of a running VM answered (account made inside) | ${ms(coldSteps.reservationMs)} | **${ms(snapSteps.reservationMs)}** | ${(coldSteps.reservationMs / snapSteps.reservationMs).toFixed(1)}× |`);
    say(`| its release → back in the pool (reset, running) | ${ms(coldSteps.back.running)} | **${ms(snapSteps.back.running)}** | ${(coldSteps.back.running / snapSteps.back.running).toFixed(1)}× |`);
    say(`| idle VM, PSS after 60 s (mean of ${AT_ONCE - 1}) | ${avg(coldSteps.idle.pssMb).toFixed(0)} MB | **${avg(snapSteps.idle.pssMb).toFixed(0)} MB** | ${(avg(coldSteps.idle.pssMb) / avg(snapSteps.idle.pssMb)).toFixed(1)}× |`);
    say(`| idle VM, CPU over ${CPU_WINDOW_MS / 1000} s (mean of ${AT_ONCE - 1}) | ${avg(coldSteps.idle.cpuPct).toFixed(2)}% | **${avg(snapSteps.idle.cpuPct).toFixed(2)}%** | |`);
    say('');
    say(`Idle, each VM (the ${AT_ONCE - 1} of the group not reserved): cold PSS ${coldSteps.idle.pssMb.map((x) => x.toFixed(0)).join(', ')} MB, CPU ${coldSteps.idle.cpuPct.map((x) => x.toFixed(2)).join(', ')}%; ` +
      `snapshot PSS ${snapSteps.idle.pssMb.map((x) => x.toFixed(0)).join(', ')} MB, CPU ${snapSteps.idle.cpuPct.map((x) => x.toFixed(2)).join(', ')}%. ` +
      `The released-and-reset VM at the same moment: cold ${coldSteps.backPss.toFixed(0)} MB, snapshot ${snapSteps.backPss.toFixed(0)} MB.`);
    say('');
    say(`### Where a restore's time goes`);
    say('');
    say(`Median snapshot boot ${ms(sb.running)} ms = ${shareLine(sb)}.`);
    say('');
    say(`Median snapshot reset ${ms(sr.running)} ms = ${shareLine(sr)}.`);
    say('');
    say(`Median cold boot ${ms(cb.running)} ms (for comparison: the kernel and initramfs, the init, sshd's start and the first SSH key exchange, all under emulation).`);
    say('');
    say(`### The floor, step by step (3 clones of the same template, restored by the bench itself; median, wall ms / QEMU CPU ms)`);
    say('');
    const fm = (k: string) => median(floors.map((f) => f[k]!));
    say('| step | wall ms | QEMU CPU ms |');
    say('|---|---:|---:|');
    say(`| restore: QEMU started, state loaded, identity applied, port forwarded (launch ${ms(fm('launch'))} + restore ${ms(fm('restore'))} + identity ${ms(fm('identity'))} + sshd ${ms(fm('sshd'))}) | ${ms(fm('start'))} | ${ms(fm('startCpu'))} |`);
    say(`| SSH key exchange with the pinned host key: what berth waits for before \`running\` | ${ms(fm('kex'))} | ${ms(fm('kexCpu'))} |`);
    say(`| then the first SSH login as root (a reservation opens one) | ${ms(fm('login1'))} | ${ms(fm('login1Cpu'))} |`);
    say(`| a second login | ${ms(fm('login2'))} | ${ms(fm('login2Cpu'))} |`);
    say(`| berth's account script (reservations/accounts.ts: useradd, the password berth hashed set by \`chpasswd -e\`, keys, sudoers) | ${ms(fm('account'))} | ${ms(fm('accountCpu'))} |`);
    say('');
    say(`Nearly all of it is TCG translating guest code for the first time in a new QEMU process (a perf profile of a clone's first login: ~65% in QEMU's translator, ~25% running translated code): ` +
      `the kernel's paths, sshd (which re-executes itself for every connection, at new addresses: ASLR), bash and each program of the account script. ` +
      `Translations do not survive a snapshot (they live in the QEMU process), so every clone pays them once, and with ASLR every new process pays again for its libraries.`);
    say('');
    say(`## References (same run)`);
    say('');
    say('| measurement | ms |');
    say('|---|---:|');
    say(`| raw cold boot, same kernel/initramfs/base, TCG, \`bootVm\` by hand → SSH login with the pinned key (median of ${RUNS}) | ${ms(rawLogin)} |`);
    say(`| \`docker run\` of the same image (host network, sshd with a fresh key) → SSH banner (median of ${RUNS}) | ${ms(dockerMed)} |`);
    say('');
    say(`## Targets (under ${b.accel === 'kvm' ? 'KVM' : 'TCG'}, this machine)`);
    say('');
    const snapFloor = (s: Start) => {
      const x = parts(s);
      return `floor ≈ ${ms(x.launch + x.restore + x.identity + x.sshd + x.rest)} ms of which QEMU start ${ms(x.launch)}, restore ${ms(x.restore)}, identity ${ms(x.identity)}, ` +
        `sshd/forward ${ms(x.sshd)}, and ${ms(x.rest)} for the first SSH key exchange with a fresh QEMU (every code path it runs, in the guest's kernel and in sshd, translated by TCG for the first time) plus recording`;
    };
    say(`- POST /v1/vms → running ≤ ${TARGET.bootMs} ms (median of ${RUNS}): ${ms(sb.running)} ms → **${met(sb.running <= TARGET.bootMs)}**${sb.running > TARGET.bootMs ? `; ${snapFloor(sb)}` : ''}.`);
    say(`- reset → running ≤ ${TARGET.resetMs} ms (median of ${RUNS}): ${ms(sr.running)} ms → **${met(sr.running <= TARGET.resetMs)}**${sr.running > TARGET.resetMs ? `; ${snapFloor(sr)}` : ''}.`);
    say(`- ${AT_ONCE} VMs at once all running ≤ ${TARGET.atOnceMs} ms: ${ms(snapSteps.allRunning)} ms → **${met(snapSteps.allRunning <= TARGET.atOnceMs)}**` +
      `${snapSteps.allRunning > TARGET.atOnceMs ? ` (${AT_ONCE} restores share ${os.cpus().length} cores: at best ${AT_ONCE / os.cpus().length}× the CPU time of one, ~${ms((AT_ONCE / os.cpus().length) * (sb.running - sb.answered))} ms)` : ''}.`);
    const reservationFloor = fm('login1') + fm('account');
    say(`- a reservation of a running VM answered ≤ ${TARGET.reservationMs} ms: ${ms(snapSteps.reservationMs)} ms → **${met(snapSteps.reservationMs <= TARGET.reservationMs)}**` +
      (snapSteps.reservationMs > TARGET.reservationMs
        ? `; floor ≈ ${ms(reservationFloor)} ms (the floor table above): berth's SSH login as root ${ms(fm('login1'))} (sshd re-executes itself at new addresses for every connection: translated anew) ` +
          `+ the account script ${ms(fm('account'))} (useradd, \`chpasswd -e\`, keys, sudoers: each program translated by TCG for the first time)`
        : '') +
      '.');
    say(`- idle PSS per 512 MiB VM after 60 s ≤ ${TARGET.pssMb} MB: ${snapSteps.idle.pssMb.map((x) => x.toFixed(0)).join(', ')} MB → **${met(snapSteps.idle.pssMb.every((x) => x <= TARGET.pssMb))}**.`);
    say(`- idle CPU per VM ≤ ${TARGET.cpuPct}% of a core: ${snapSteps.idle.cpuPct.map((x) => x.toFixed(2)).join(', ')}% → **${met(snapSteps.idle.cpuPct.every((x) => x <= TARGET.cpuPct))}**.`);
    say(`- Dockerfile → ready for an image whose engine image was converted already ≤ ${TARGET.sharedImageMs} ms: ${ms(shared.total)} ms (${shared.how === 'shared' ? 'base shared' : `NOT shared: ${shared.how}`}) → **${met(shared.total <= TARGET.sharedImageMs && shared.how === 'shared')}**.`);
    say('');
    say(`The whole bench took ${((performance.now() - benchStarted) / 1000).toFixed(0)} s.`);
    fs.writeFileSync(path.join(here, 'RESULTS.md'), lines.join('\n') + '\n');
  } finally {
    for (const id of vmIds) await call('DELETE', `/v1/vms/${id}`, admin).catch(() => {});
    for (const name of containers) await run('docker', ['rm', '-f', name]).catch(() => {});
    for (const dir of rawDirs) await stopVm(dir).catch(() => {});
    await server?.stop();
    // Anything berth left running (QEMU outlives berth by design), and the images' engine tags.
    const vmsDir = path.join(dataDir, 'vms');
    if (fs.existsSync(vmsDir)) for (const d of fs.readdirSync(vmsDir)) await stopVm(path.join(vmsDir, d)).catch(() => {});
    const imagesDir = path.join(dataDir, 'images');
    for (const id of fs.existsSync(imagesDir) ? fs.readdirSync(imagesDir) : []) await run('docker', ['rmi', '-f', `berth/image-${id}:latest`]).catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
