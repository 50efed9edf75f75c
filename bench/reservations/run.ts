// bench/reservations: reservation latency and allocation under contention, on real
// sshd machines, against a reference taken in the same run (one raw SSH round trip:
// node-ssh connect + `true`, what the slowest part of a reservation costs per machine).
//   npm run bench:reservations
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NodeSSH } from 'node-ssh';
import { callJson, startServer } from '../../test/helpers/server-process.js';
import { removeAllTestMachines, restoreUseradd, rootKey, slowDownUseradd, startMachines } from '../../test/helpers/ssh-machines.js';

const POOL = 12;
const RUNS = 5;
const CONCURRENT = 200;
const PASSWORD = 'a benchmark passphrase';
const here = path.dirname(new URL(import.meta.url).pathname);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['scripts/build-base-image.sh', path.resolve('.data')], { stdio: 'inherit' });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-res-'));
  const machines = await startMachines(POOL, 'bench');
  const server = await startServer({
    BERTH_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    ADMIN_PASSWORD: PASSWORD,
    BERTH_LOGIN_MAX_PER_IP: '100000',
    BERTH_RESERVATION_MAX_MACHINES_PER_USER: '100',
  });
  const call = (method: string, url: string, token?: string, body?: unknown) => callJson(server.url, method, url, token, body);
  const lines: string[] = [];
  const say = (s: string) => {
    console.log(s);
    lines.push(s);
  };

  try {
    const admin = (await call('POST', '/v1/token', undefined, { username: 'admin', password: PASSWORD })).body.access_token;
    for (const m of machines) {
      await call('POST', '/v1/machines', admin, { name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey });
    }
    await call('POST', '/v1/register', undefined, { username: 'bencher', password: PASSWORD });
    const user = (await call('POST', '/v1/token', undefined, { username: 'bencher', password: PASSWORD })).body.access_token;

    // References: raw SSH round trips (connect + `true`) to one machine, and to ten at once.
    const rawTrip = async (m: (typeof machines)[number]) => {
      const ssh = new NodeSSH();
      await ssh.connect({ host: m.host, port: m.port, username: 'root', privateKey: rootKey.private });
      await ssh.execCommand('true');
      ssh.dispose();
    };
    const raw: number[] = [];
    const raw10: number[] = [];
    await rawTrip(machines[0]!);
    for (let i = 0; i < RUNS; i++) {
      let started = performance.now();
      await rawTrip(machines[0]!);
      raw.push(performance.now() - started);
      started = performance.now();
      await Promise.all(machines.slice(0, 10).map(rawTrip));
      raw10.push(performance.now() - started);
    }

    const reserveTimes = async (count: number) => {
      const times: number[] = [];
      const releases: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const started = performance.now();
        const r = await call('POST', '/v1/reservations', user, { count });
        times.push(performance.now() - started);
        if (r.status !== 201) throw new Error(`reserve ${count}: ${r.status} ${JSON.stringify(r.body)}`);
        const releaseStarted = performance.now();
        await call('DELETE', `/v1/reservations/${r.body.id}`, user);
        releases.push(performance.now() - releaseStarted);
      }
      return { reserve: median(times), release: median(releases) };
    };
    await reserveTimes(1); // warm-up: JIT, pools, first contact
    const one = await reserveTimes(1);
    const ten = await reserveTimes(10);

    // The same with machines whose account creation waits 300 ms (a slow remote host:
    // network file systems, directory services) instead of competing for this host's CPU.
    await Promise.all(machines.map((m) => slowDownUseradd(m, 0.3)));
    const slowOne = await reserveTimes(1);
    const slowTen = await reserveTimes(10);
    await Promise.all(machines.map(restoreUseradd));

    // Contention: 200 requests at once for a pool of 12.
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: CONCURRENT }, (_, i) => call('POST', '/v1/reservations', user, { count: 1, username: `c${i}` })),
    );
    const elapsed = performance.now() - started;
    const won = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 409).length;
    const names = won.map((r) => r.body.machines[0].name as string);
    const doubleBooked = names.length - new Set(names).size;
    let accountsOnMachines = 0;
    for (const m of machines) {
      accountsOnMachines += Number((await m.sh("getent passwd | grep -c ':berth reservation ' || true")).out.trim());
    }
    await call('POST', '/v1/reservations/release-all', admin);

    say(`# bench/reservations — latest results`);
    say('');
    say(`${new Date().toISOString()}, ${os.cpus().length} cores, Node ${process.version}; berth as a process on its embedded MariaDB;`);
    say(`${POOL} machines = sshd containers from the local Debian image on 127.0.0.1; medians of ${RUNS} runs.`);
    say('');
    const r1 = median(raw);
    say('| measurement | ms | vs one raw SSH round trip |');
    say('|---|---:|---:|');
    say(`| reference: one raw SSH round trip (connect + \`true\`) | ${r1.toFixed(0)} | 1.00× |`);
    say(`| reference: 10 raw SSH round trips at once | ${median(raw10).toFixed(0)} | ${(median(raw10) / r1).toFixed(2)}× |`);
    say(`| reserve 1 machine (claim + account over SSH) | ${one.reserve.toFixed(0)} | ${(one.reserve / r1).toFixed(2)}× |`);
    say(`| reserve 10 machines (in parallel) | ${ten.reserve.toFixed(0)} | ${(ten.reserve / r1).toFixed(2)}× |`);
    say(`| release 1 machine | ${one.release.toFixed(0)} | ${(one.release / r1).toFixed(2)}× |`);
    say(`| release 10 machines | ${ten.release.toFixed(0)} | ${(ten.release / r1).toFixed(2)}× |`);
    say(`| reserve 1 slow machine (useradd waits 300 ms) | ${slowOne.reserve.toFixed(0)} | ${(slowOne.reserve / r1).toFixed(2)}× |`);
    say(`| reserve 10 slow machines | ${slowTen.reserve.toFixed(0)} | ${(slowTen.reserve / r1).toFixed(2)}× |`);
    say('');
    say(`10 machines / 1 machine: **${(ten.reserve / one.reserve).toFixed(2)}×** with machines sharing this host's ${os.cpus().length} cores ` +
      `(raw SSH alone: ${(median(raw10) / r1).toFixed(2)}×); **${(slowTen.reserve / slowOne.reserve).toFixed(2)}×** with latency-bound machines. Target ≤ 1.5×.`);
    say('');
    say(`${CONCURRENT} concurrent requests for a pool of ${POOL}: ${won.length} reserved, ${refused} refused (409), ` +
      `${CONCURRENT - won.length - refused} other; ${elapsed.toFixed(0)} ms in all = ${(CONCURRENT / (elapsed / 1000)).toFixed(0)} requests/s; ` +
      `double bookings: ${doubleBooked}; berth accounts on the machines: ${accountsOnMachines} (one per reservation).`);
    fs.writeFileSync(path.join(here, 'RESULTS.md'), lines.join('\n') + '\n');
    if (doubleBooked !== 0 || won.length !== POOL || accountsOnMachines !== POOL) process.exitCode = 1;
  } finally {
    await server.stop();
    await Promise.all(machines.map((m) => m.stop()));
    await removeAllTestMachines();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
