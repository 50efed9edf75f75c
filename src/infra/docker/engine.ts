// The Docker engine client, made on first use: dockerode (with docker-modem and ssh2) is
// a tenth of an idle berth's memory, and only image builds and the readiness probe use it.
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
