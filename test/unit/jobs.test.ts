import { describe, expect, it } from 'vitest';
import { createJobRunner } from '../../src/infra/jobs.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the job runner', () => {
  it('never overlaps a job with itself, goes on after a failure, and stop waits for the tick', async () => {
    let running = 0;
    let most = 0;
    let ticks = 0;
    const errors: unknown[] = [];
    const runner = createJobRunner(
      [
        {
          name: 'slow',
          intervalMs: 5,
          async tick() {
            running++;
            most = Math.max(most, running);
            ticks++;
            await sleep(30);
            running--;
            if (ticks === 2) throw new Error('the second tick fails');
            return ticks;
          },
        },
      ],
      { error: (obj) => errors.push(obj) },
    );
    runner.start();
    // Asked for while one runs: it joins that tick.
    const [a, b] = await Promise.all([runner.runNow<number>('slow'), runner.runNow<number>('slow')]);
    expect(a).toBe(b);
    await sleep(150);
    await runner.stop();
    expect(running).toBe(0);
    expect(most).toBe(1);
    expect(ticks).toBeGreaterThan(2);
    expect(errors).toHaveLength(1);
    const after = ticks;
    await sleep(50);
    expect(ticks).toBe(after);
    expect(() => runner.runNow('nothing')).toThrow(/no job named/);
  });

  it('starts a new tick for a runNow asked right after the last one answered', async () => {
    let ticks = 0;
    const runner = createJobRunner([{ name: 'count', intervalMs: 60_000, tick: async () => ++ticks }], { error: () => {} });
    expect(await runner.runNow<number>('count')).toBe(1);
    expect(await runner.runNow<number>('count')).toBe(2);
    await runner.stop();
  });

  it('answers runNow with the failure of a tick that throws, and the job goes on by itself', async () => {
    let ticks = 0;
    const errors: unknown[] = [];
    const runner = createJobRunner(
      [
        {
          name: 'failing',
          intervalMs: 5,
          async tick() {
            ticks++;
            throw new Error(`tick ${ticks} fails`);
          },
        },
      ],
      { error: (obj) => errors.push(obj) },
    );
    await expect(runner.runNow('failing')).rejects.toThrow(/tick 1 fails/);
    expect(errors).toHaveLength(1);
    // Started, it keeps ticking on its interval although every tick fails; each failure is logged.
    runner.start();
    await expect.poll(() => ticks, { timeout: 5000 }).toBeGreaterThan(3);
    await runner.stop();
    expect(errors.length).toBe(ticks);
    await expect(runner.runNow('failing')).rejects.toThrow(/stopped/);
  });
});
