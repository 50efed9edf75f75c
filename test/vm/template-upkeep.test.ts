// Upkeep of template snapshots on real QEMU and files: what a berth process that is gone
// left half-made (a template's QEMU still waiting, its work, its scratch directory) is swept
// by its maker's tag, not its age, while a live maker's work and an unrelated process named
// by a pid file are left alone; and an image whose template cannot be made fails as soon as
// its guest says so, and is not tried again until its back-off ends (or its key changes).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runningPid, stopVm } from '../../src/infra/vm/machine.js';
import { ownerTag } from '../../src/infra/vm/process-owner.js';
import { imageToExt4 } from '../../src/infra/vm/rootfs.js';
import { createVmRuntime } from '../../src/infra/vm/runtime.js';
import { createTemplates, type TemplateSource, type Templates } from '../../src/infra/vm/template.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-template-upkeep-test-'));
const runtime = createVmRuntime({ cacheDir: path.resolve('.data/cache'), accel: 'tcg', egress: 'none' });
const logged: { msg: string; obj: Record<string, unknown> }[] = [];
const log = { info: (obj: object, msg: string) => logged.push({ obj: obj as Record<string, unknown>, msg }), warn: (obj: object, msg: string) => logged.push({ obj: obj as Record<string, unknown>, msg }) };
const dirOf = (id: string) => path.join(work, 'images', id, 'templates');
let templates: Templates;
const cleanup: (() => void)[] = [];

/** A QEMU that does nothing (paused), daemonized with its pid file in `dir`, as a template's is. */
function pausedQemu(dir: string): number {
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('qemu-system-x86_64', ['-M', 'microvm', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-daemonize', '-pidfile', path.join(dir, 'qemu.pid')], { cwd: dir });
  return Number(fs.readFileSync(path.join(dir, 'qemu.pid'), 'utf8'));
}

/** Whether `pid` runs (a zombie, killed and not yet reaped by init, does not). */
const alive = (pid: number) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

beforeAll(() => {
  templates = createTemplates({ runtime, dirOf, bootTimeoutMs: 150_000, log });
});

afterAll(async () => {
  await templates.close();
  for (const c of cleanup) c();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('sweeping what makings left behind', () => {
  it('stops and removes a dead maker’s work and scratch, and leaves a live maker’s and an unrelated process alone', async () => {
    const own = await ownerTag();
    // This pid with another start time: a process that was, whose pid is now another's.
    const dead = `${process.pid}.1`;
    const parent = dirOf('img');
    const orphan = path.join(parent, `.making-1cpu-512mb-${dead}-0123abcd`);
    const live = path.join(parent, `.making-1cpu-512mb-${own}-4567abcd`);
    const stranger = path.join(parent, `.adopting-1cpu-512mb-${dead}-89abcdef`);
    const orphanPid = pausedQemu(orphan);
    const livePid = pausedQemu(live);
    cleanup.push(() => void stopVm(live, 0));
    // A pid file naming a process that is no QEMU of that directory (a pid reused).
    const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    cleanup.push(() => sleeper.kill());
    fs.mkdirSync(stranger, { recursive: true });
    fs.writeFileSync(path.join(stranger, 'qemu.pid'), String(sleeper.pid));
    const deadScratch = fs.mkdtempSync(path.join(os.tmpdir(), `berth-template-${dead}-`));
    const liveScratch = fs.mkdtempSync(path.join(os.tmpdir(), `berth-template-${own}-`));
    cleanup.push(() => fs.rmSync(liveScratch, { recursive: true, force: true }), () => fs.rmSync(deadScratch, { recursive: true, force: true }));

    await templates.sweep(['img', 'an-image-without-templates']);

    expect(alive(orphanPid)).toBe(false);
    expect(fs.existsSync(orphan)).toBe(false);
    expect(fs.existsSync(deadScratch)).toBe(false);
    expect(await runningPid(live)).toBe(livePid);
    expect(fs.existsSync(liveScratch)).toBe(true);
    expect(alive(sleeper.pid!)).toBe(true);
    expect(fs.existsSync(stranger)).toBe(false);
    expect(logged.filter((l) => l.msg === 'removed a template left half-made').map((l) => l.obj.dir)).toEqual(expect.arrayContaining([orphan, stranger]));
    await stopVm(live, 0);
  }, 60_000);
});

describe('a template that cannot be made', () => {
  let source: TemplateSource;
  const failuresOf = (image: string) => logged.filter((l) => l.msg.startsWith('making a VM template failed') && l.obj.image === image);
  async function failureOf(image: string, count: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 120_000;
    while (failuresOf(image).length < count) {
      if (Date.now() > deadline) throw new Error(`no failure #${count} within 120 s; log: ${JSON.stringify(logged.slice(-5))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return failuresOf(image)[count - 1]!.obj;
  }

  beforeAll(async () => {
    // An image without sshd: its guest init says "sshd failed" and waits for nothing.
    const base = path.join(work, 'no-sshd.ext4');
    await imageToExt4(docker, BASE_IMAGE, base);
    execFileSync('debugfs', ['-w', '-R', 'rm /usr/sbin/sshd', base], { stdio: 'pipe' });
    source = { imageId: 'no-sshd', base, command: null, cpus: 1, memoryMb: 512, egress: 'none' };
  }, 120_000);

  it('fails as soon as its guest says so, and is not tried again before its back-off ends', async () => {
    templates.ensure(source);
    const failed = await failureOf('no-sshd', 1);
    // The guest's own words, not the boot timeout (150 s): the queue is free again at once.
    expect(failed.err).toMatch(/the template's guest said "berth-init: sshd failed"/);
    expect(failed).toMatchObject({ failures: 1, retryInS: 60 });
    expect((await templates.lookup(source)).reason).toMatch(/could not be made \(the template's guest said .*\); next try in \d+ s/);

    // Asked again (a cold start, the job's next tick): nothing is made.
    templates.ensure(source);
    await new Promise((r) => setTimeout(r, 3000));
    expect(failuresOf('no-sshd')).toHaveLength(1);
    expect(fs.readdirSync(dirOf('no-sshd')).filter((d) => d.startsWith('.making-'))).toEqual([]);
  }, 200_000);

  it('is tried again at once when what it is made of changes', async () => {
    const changed = { ...source, command: { argv: ['/bin/true'], env: [], user: null, workdir: null } };
    templates.ensure(changed);
    const failed = await failureOf('no-sshd', 2);
    expect(failed).toMatchObject({ failures: 1, retryInS: 60 });
  }, 200_000);
});
