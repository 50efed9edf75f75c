// The Docker engine client, made on first use: only image builds and the readiness probe
// use dockerode (with docker-modem and ssh2), which a berth that only answers reads need
// not load (bench/reads/RESULTS.md: "Where the memory went").
import { createRequire } from 'node:module';
import type Docker from 'dockerode';

const require = createRequire(import.meta.url);

/** A function that returns the one client of the engine at `socketPath`, loading dockerode the first time. */
export function dockerEngine(socketPath: string): () => Docker {
  let client: Docker | undefined;
  return () => {
    if (!client) {
      const DockerClient = require('dockerode') as typeof Docker;
      client = new DockerClient({ socketPath });
    }
    return client;
  };
}
