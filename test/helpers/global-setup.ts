// Starts what the test run needs and stops it at the end: its own MariaDB (a private
// server in .data/test, reused between runs so the second run skips initialisation), and
// the Docker engine with the base image for the SSH test machines.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedMariaDb } from '../../src/infra/embedded-mariadb.js';

declare module 'vitest' {
  export interface ProvidedContext {
    mariadbSocket: string;
  }
}

export default async function setup(project: TestProject) {
  const dataDir = path.resolve(process.env.BERTH_TEST_DATA_DIR ?? '.data/test');
  // Several checkouts may run their suites at once on one machine: each run's containers,
  // temporary files and VMs carry its checkout's mark, and cleaning up touches only those.
  // The test workers inherit both variables.
  process.env.BERTH_TEST_RUN = createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  const tmp = path.join(dataDir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  // A template's QEMU, dropped to berth-vm (BERTH_VM_EGRESS=internet), saves into a
  // directory of its own under TMPDIR: berth-vm must be able to pass through these two.
  for (const dir of [dataDir, tmp]) fs.chmodSync(dir, 0o755);
  process.env.TMPDIR = tmp;
  // The Docker engine and the Debian base image the SSH test machines run on (built once
  // per machine, cached in the data directory).
  execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['scripts/build-base-image.sh', path.resolve('.data')], { stdio: 'inherit' });
  const { removeAllTestMachines } = await import('./ssh-machines.js');
  await removeAllTestMachines();
  const { removeStrayNamespaces } = await import('./netns.js');
  removeStrayNamespaces();
  // VMs of an earlier run of this checkout that died before stopping them (their files are in its TMPDIR).
  // (pkill itself, not a shell: a shell's command line would match the pattern and be killed too)
  const stopStrayVms = () => spawnSync('pkill', ['-KILL', '-f', `qemu-system-x86_64 .*${tmp}/`]);
  stopStrayVms();

  const server = await startEmbeddedMariaDb({ dir: path.join(dataDir, 'mariadb') });
  project.provide('mariadbSocket', server.root.socketPath!);
  return async () => {
    await removeAllTestMachines();
    stopStrayVms();
    await server.stop();
  };
}
