// Upkeep of template snapshots on real QEMU and files: what a berth process that is gone
// left half-made (a template's QEMU still waiting, its work, its scratch directory) is swept
// by its maker's tag, not its age, while a live maker's work and an unrelated process named
// by a pid file are left alone.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runningPid, stopVm } from '../../src/infra/vm/machine.js';
import { ownerTag } from '../../src/infra/vm/process-owner.js';
import { createVmRuntime } from '../../src/infra/vm/runtime.js';
import { createTemplates, type Templates } from '../../src/infra/vm/template.js';

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
