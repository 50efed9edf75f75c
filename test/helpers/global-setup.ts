// Starts the test run's own MariaDB (a private server in .data/test, reused between runs
// so the second run skips initialisation) and stops it when the run ends.
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedMariaDb } from '../../src/infra/embedded-mariadb.js';

declare module 'vitest' {
  export interface ProvidedContext {
    mariadbSocket: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = path.resolve(process.env.BERTH_TEST_DATA_DIR ?? '.data/test', 'mariadb');
  const server = await startEmbeddedMariaDb({ dir });
  project.provide('mariadbSocket', server.root.socketPath!);
  return async () => {
    await server.stop();
  };
}
