// Starts what the test run needs and stops it at the end: its own MariaDB (a private
// server in .data/test, reused between runs so the second run skips initialisation), and
// the Docker engine with the base image for the SSH test machines.
import { execFileSync } from 'node:child_process';
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
  // The Docker engine and the Debian base image the SSH test machines run on (built once
  // per machine, cached in the data directory).
  execFileSync('bash', ['scripts/ensure-docker.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['scripts/build-base-image.sh', path.resolve('.data')], { stdio: 'inherit' });
  const { removeAllTestMachines } = await import('./ssh-machines.js');
  await removeAllTestMachines();
  // VMs of an earlier run that died before stopping them (test data lives in berth-test-* dirs).
  const stopStrayVms = () => execFileSync('bash', ['-c', "pkill -KILL -f 'qemu-system-x86_64 .*berth-(test|vm-test)-' || true"]);
  stopStrayVms();

  const server = await startEmbeddedMariaDb({ dir: path.join(dataDir, 'mariadb') });
  project.provide('mariadbSocket', server.root.socketPath!);
  return async () => {
    await removeAllTestMachines();
    stopStrayVms();
    await server.stop();
  };
}
