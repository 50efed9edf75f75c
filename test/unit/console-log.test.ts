// The console log of a VM is written by another process (QEMU, appending) as fast as the
// guest likes. berth keeps its newest bytes within a bound and reads only what it needs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LogScanner, readTail, trimLog } from '../../src/infra/vm/console-log.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-console-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A shell that appends numbered lines to `file` (O_APPEND, like QEMU's chardev) until killed. */
function appender(file: string) {
  return spawn('sh', ['-c', `i=0; while :; do i=$((i+1)); echo "line $i $(printf '%0100d' 0)"; done >>"${file}"`], { stdio: 'ignore' });
}

describe('console log', () => {
  it('stays bounded while a writer floods it, keeping the newest lines whole and in order', async () => {
    const file = path.join(dir, 'flood.log');
    const writer = appender(file);
    try {
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 100));
        await trimLog(file, 256 * 1024);
      }
    } finally {
      writer.kill('SIGKILL');
    }
    await trimLog(file, 256 * 1024);
    expect(fs.statSync(file).size).toBeLessThanOrEqual(256 * 1024);
    // The writer went on appending through the cuts: the kept lines are the newest, in order.
    const numbers = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .slice(1, -1)
      .map((l) => Number(/^line (\d+) /.exec(l)?.[1]));
    expect(numbers.every((n) => Number.isInteger(n))).toBe(true);
    expect(numbers.every((n, i) => i === 0 || n === numbers[i - 1]! + 1)).toBe(true);
    expect(numbers.at(-1)!).toBeGreaterThan(numbers.length);
  });

  it('reads only the tail, and only what is new, even across a cut', async () => {
    const file = path.join(dir, 'scan.log');
    fs.writeFileSync(file, 'x'.repeat(300_000) + 'berth-init: sshd st');
    expect(await readTail(file, 13)).toBe('init: sshd st');
    const scanner = new LogScanner(file, { maxRead: 64 * 1024, overlap: 64 });
    let seen = '';
    for (let chunk = await scanner.next(); chunk; chunk = await scanner.next()) seen = chunk;
    fs.appendFileSync(file, 'arted\n');
    // A marker split between two reads is still found.
    expect(await scanner.next()).toContain('berth-init: sshd started');
    expect(seen.length).toBeLessThanOrEqual(64 * 1024 + 64);
    // Cut from under the scanner: it starts again near the end instead of reading past it.
    await trimLog(file, 64 * 1024);
    fs.appendFileSync(file, 'after the cut\n');
    let after = '';
    for (let chunk = await scanner.next(); chunk; chunk = await scanner.next()) after += chunk;
    expect(after).toContain('after the cut');
  });
});
