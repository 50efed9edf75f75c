// Work that goes on after its request was answered (an image build, a VM's boot, a
// reprovision command): tracked, so that closing berth can wait for it.

export interface BackgroundWork {
  /** Tracks `work` until it settles; a failure it did not handle itself is logged as `what`. */
  track(work: Promise<unknown>, what: string): void;
  /** Resolves once everything tracked so far has settled. */
  settled(): Promise<void>;
}

export function createBackgroundWork(log: { error(obj: object, msg: string): void }): BackgroundWork {
  const running = new Set<Promise<unknown>>();
  return {
    track(work, what) {
      const tracked = work.catch((err: unknown) => log.error({ err }, `${what} failed`)).finally(() => running.delete(tracked));
      running.add(tracked);
    },
    async settled() {
      await Promise.allSettled([...running]);
    },
  };
}
