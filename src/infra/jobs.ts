// The one way berth runs background work: each job ticks on its own interval, never
// overlaps itself (the next tick is scheduled when one ends), logs its failures and goes
// on; `stop` waits for the ticks in progress. Every job berth has is in the list of
// src/jobs.ts.

export interface Job<T = unknown> {
  name: string;
  intervalMs: number;
  /** One tick; its result is what `runNow` answers. */
  tick(): Promise<T>;
}

export interface JobRunner {
  /** Ticks every job now, then on its interval. */
  start(): void;
  /**
   * Runs a tick of `name` now (or joins the one running) and answers its result; rejects
   * with the tick's error when it fails (the runner logs it and goes on all the same), and
   * once the runner is stopped.
   */
  runNow<T>(name: string): Promise<T>;
  /** No more ticks; resolves once the ticks in progress have ended. */
  stop(): Promise<void>;
}

interface Running {
  job: Job;
  timer?: NodeJS.Timeout;
  current: Promise<unknown> | null;
}

export function createJobRunner(jobs: Job[], log: { error(obj: object, msg: string): void }): JobRunner {
  const running = new Map<string, Running>(jobs.map((job) => [job.name, { job, current: null }]));
  let stopped = false;

  /** The tick in progress, as the job answers it: whoever asked for it sees its failure too. */
  function tick(r: Running): Promise<unknown> {
    if (r.current) return r.current;
    // The slot is free before anyone waiting for this tick hears its end: a runNow right
    // after it starts a new tick instead of answering this one's (stale) result again.
    const current = r.job.tick().finally(() => {
      r.current = null;
    });
    r.current = current;
    // The runner's own handling (which also keeps a scheduled tick's failure from going
    // unhandled): the failure is logged and the job goes on at its next tick.
    current
      .catch((err: unknown) => log.error({ err, job: r.job.name }, 'a background job failed; it runs again at its next tick'))
      .finally(() => schedule(r));
    return current;
  }

  function schedule(r: Running) {
    clearTimeout(r.timer);
    if (stopped) return;
    r.timer = setTimeout(() => void tick(r), r.job.intervalMs);
    r.timer.unref();
  }

  return {
    start() {
      for (const r of running.values()) void tick(r);
    },
    runNow<T>(name: string) {
      const r = running.get(name);
      if (!r) throw new Error(`no job named ${name}`);
      // Stopped (berth is closing): what the job needs may be gone already.
      if (stopped) return Promise.reject(new Error(`the job runner is stopped: ${name} does not run`));
      return tick(r) as Promise<T>;
    },
    async stop() {
      stopped = true;
      for (const r of running.values()) clearTimeout(r.timer);
      await Promise.allSettled([...running.values()].map((r) => r.current));
    },
  };
}
