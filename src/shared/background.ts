// Work that goes on after its request was answered (an image build, a VM's boot, a
// reprovision command): tracked, so that closing berth can wait for it.

export interface BackgroundWork {
  /** Tracks `work` until it settles; its failure is its own to handle (it is not reported here). */
  track(work: Promise<unknown>): void;
  /** Resolves once everything tracked so far has settled. */
  settled(): Promise<void>;
}

export function createBackgroundWork(): BackgroundWork {
  const running = new Set<Promise<unknown>>();
  return {
    track(work) {
      running.add(work);
      void work.then(
        () => running.delete(work),
        () => running.delete(work),
      );
    },
    async settled() {
      await Promise.allSettled([...running]);
    },
  };
}
