// The VM groundwork on the real Docker engine and real QEMU: an image becomes a
// read-only ext4 base, a VM boots from it with its own overlay and its own host key,
// answers SSH, and a reset brings it back pristine.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair, parseHostKey } from '../../src/infra/ssh.js';
import { prepareBootArtifacts, type BootArtifacts } from '../../src/infra/vm/boot-artifacts.js';
import { bootVm, discardVm, probeKvm, runningPid, stopVm, type VmSpec } from '../../src/infra/vm/qemu.js';
import { ImageNotBootableError, imageToExt4 } from '../../src/infra/vm/rootfs.js';
import { BASE_IMAGE, freePort, rootKey } from '../helpers/ssh-machines.js';
import { vmLogin } from '../helpers/vm-login.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-vm-test-'));
const base = path.join(work, 'base.ext4');
let artifacts: BootArtifacts;
let spec: VmSpec;

const hashHead = (file: string) => createHash('sha256').update(fs.readFileSync(file).subarray(0, 8 << 20)).digest('hex');

beforeAll(async () => {
  artifacts = await prepareBootArtifacts(path.resolve('.data/cache'));
  const hostKey = generateSshKeyPair();
  spec = {
    dir: path.join(work, 'vm1'),
    name: 'boot-test',
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
    authorizedKeys: [rootKey.public],
  };
}, 120_000);
afterAll(async () => {
  await stopVm(spec.dir);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('an image as a VM', () => {
  it('becomes a read-only ext4 base', async () => {
    const r = await imageToExt4(docker, BASE_IMAGE, base);
    expect(r.sizeBytes).toBeGreaterThan(100 << 20);
    expect(fs.statSync(base).mode & 0o222).toBe(0); // nobody may write to it
    // This host's engine keeps layers with overlay2, and tests run as root: read in place, no export.
    expect(r.source).toBe('layers');
    console.log(`image → ext4: ${r.source} ${r.readMs} ms, mkfs ${r.ext4Ms} ms, ${Math.round(r.sizeBytes / 1048576)} MiB`);
  });

  it('boots with its own overlay and host key, answers SSH, and a reset discards what it wrote', async () => {
    const before = hashHead(base);
    let started = performance.now();
    const pid = await bootVm(spec);
    let ssh = await vmLogin(spec);
    const bootMs = performance.now() - started;
    // A new berth process knows only the directory: it finds the same VM.
    expect(await runningPid(spec.dir)).toBe(pid);
    expect(ssh.fingerprint).toBe(parseHostKey(spec.hostKey.public));
    const uname = await ssh.runScript('uname -r; echo precious > /root/file; sync', []);
    expect(uname.stdout.trim()).toBe(artifacts.kernelVersion);
    ssh.close();
    expect(fs.readFileSync(path.join(spec.dir, 'console.log'), 'utf8')).toContain('berth-init: sshd started');

    // A reset as berth makes one: discard (kill, drop the writable layer), then boot.
    started = performance.now();
    await discardVm(spec.dir);
    await bootVm(spec);
    ssh = await vmLogin(spec);
    const resetMs = performance.now() - started;
    const after = await ssh.runScript('cat /root/file 2>/dev/null || echo gone', []);
    ssh.close();
    expect(after.stdout.trim()).toBe('gone');
    expect(hashHead(base)).toBe(before);
    console.log(`boot to SSH ${Math.round(bootMs)} ms, reset to SSH ${Math.round(resetMs)} ms (TCG)`);

    await stopVm(spec.dir);
    expect(await runningPid(spec.dir)).toBeNull();
    // Two boots under software emulation, sharing 2 cores with the rest of the suite.
  }, 180_000);

  it("reads the image's base whatever backing file its overlay's header names (QEMU as berth-vm can rewrite it)", async () => {
    await bootVm(spec);
    (await vmLogin(spec)).close();
    await stopVm(spec.dir);
    // A header rewritten to name a host file (here one with a marker berth's base cannot hold).
    const decoy = path.join(work, 'decoy.raw');
    fs.writeFileSync(decoy, Buffer.alloc(16 << 20, 'host secret '));
    execFileSync('qemu-img', ['rebase', '-u', '-F', 'raw', '-b', decoy, path.join(spec.dir, 'overlay.qcow2')]);
    // Started again as after a stop (the overlay kept): it still boots from the base.
    await bootVm(spec);
    const ssh = await vmLogin(spec);
    expect((await ssh.runScript('test -x /usr/sbin/sshd && echo base', [])).stdout.trim()).toBe('base');
    ssh.close();
    await stopVm(spec.dir);
  }, 180_000);

  it('refuses an image without sshd, saying so', async () => {
    // A one-file image, imported from a tar as berth's base image is.
    const dir = fs.mkdtempSync(path.join(work, 'tiny-'));
    fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello\n');
    const tarball = path.join(work, 'tiny.tar');
    execFileSync('tar', ['-C', dir, '-cf', tarball, '.']);
    const stream = (await docker.importImage(fs.createReadStream(tarball) as never, { repo: 'berth-test/no-sshd', tag: 'latest' } as never)) as unknown as NodeJS.ReadableStream;
    await new Promise((r) => docker.modem.followProgress(stream, r));
    await expect(imageToExt4(docker, 'berth-test/no-sshd:latest', path.join(work, 'nope.ext4'))).rejects.toThrow(ImageNotBootableError);
    await expect(imageToExt4(docker, 'berth-test/no-sshd:latest', path.join(work, 'nope.ext4'))).rejects.toThrow(/openssh-server/);
    await docker.getImage('berth-test/no-sshd:latest').remove({ force: true });
  });

  it('probes KVM within its timeout (this machine: /dev/kvm exists but guests fail)', async () => {
    const started = performance.now();
    const kvm = await probeKvm(artifacts.kernel, 5000);
    expect(typeof kvm).toBe('boolean');
    expect(performance.now() - started).toBeLessThan(8000);
    console.log(`KVM usable: ${kvm}`);
  });
});
