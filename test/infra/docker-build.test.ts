// Dockerfile builds through the real engine: the log is written while the build runs,
// RUN steps work off the network, and a failing step (or a base that exists nowhere) ends
// with the engine's message.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildFailedError, buildImage, dockerfileContext } from '../../src/infra/docker/build.js';
import { ABSENT_BASE } from '../helpers/docker.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-build-test-'));
const tag = `berth-test/build:${Date.now()}`;
afterAll(async () => {
  await docker.getImage(tag).remove({ force: true }).catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('buildImage', () => {
  it('builds a Dockerfile FROM the local base image with a RUN step, logging as it goes', async () => {
    const logFile = path.join(dir, 'ok.log');
    // The sleep holds the build open long enough to watch its log grow.
    const dockerfile = `FROM ${BASE_IMAGE}\nRUN echo started && sleep 1 && echo built-by-berth > /etc/berth-marker && cat /etc/berth-marker\n`;
    const building = buildImage(docker, await dockerfileContext(dockerfile), tag, logFile);
    // The log grows while the build runs, not only at the end.
    let sawWhileRunning = false;
    let done = false;
    void building.finally(() => (done = true));
    while (!done) {
      const soFar = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
      // Output lines, not the step header (which quotes the whole command).
      if (/^started$/m.test(soFar) && !/^built-by-berth$/m.test(soFar)) sawWhileRunning = true;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await building;
    expect(r.imageId).toMatch(/^sha256:/);
    const log = fs.readFileSync(logFile, 'utf8');
    expect(log).toContain('Step 2/2 : RUN echo started');
    expect(log).toContain('built-by-berth');
    expect(sawWhileRunning).toBe(true);
    const inspected = await docker.getImage(tag).inspect();
    expect(inspected.Id).toBe(r.imageId);
    console.log(`build: ${r.buildMs} ms`);
  });

  it('fails with the engine’s message when a step fails, and logs it', async () => {
    const logFile = path.join(dir, 'bad.log');
    const dockerfile = `FROM ${BASE_IMAGE}\nRUN echo about to fail && exit 3\n`;
    const failing = buildImage(docker, await dockerfileContext(dockerfile), `${tag}-bad`, logFile);
    await expect(failing).rejects.toBeInstanceOf(BuildFailedError);
    await expect(failing).rejects.toThrow(/returned a non-zero code: 3/);
    expect(fs.readFileSync(logFile, 'utf8')).toMatch(/about to fail[\s\S]*ERROR: .*non-zero code: 3/);
  });

  it('fails clearly for a base image that exists nowhere (a registry under .invalid cannot be reached)', async () => {
    const failing = buildImage(docker, await dockerfileContext(`FROM ${ABSENT_BASE}\n`), `${tag}-nope`, path.join(dir, 'nope.log'));
    await expect(failing).rejects.toBeInstanceOf(BuildFailedError);
    await expect(failing).rejects.toThrow('registry.invalid');
  });

  it('runs RUN steps without network', async () => {
    const logFile = path.join(dir, 'net.log');
    const dockerfile = `FROM ${BASE_IMAGE}\nRUN ip -o link | grep -v ' lo:' | wc -l > /tmp/n && cat /tmp/n\n`;
    const r = await buildImage(docker, await dockerfileContext(dockerfile), `${tag}-net`, logFile);
    expect(r.imageId).toMatch(/^sha256:/);
    // Only the loopback interface inside the build container.
    expect(fs.readFileSync(logFile, 'utf8')).toMatch(/\n0\n/);
    await docker.getImage(`${tag}-net`).remove({ force: true });
  });
});
