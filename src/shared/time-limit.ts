// Waiting for something with a limit: the answer, or `error()` once `ms` passed (a late
// answer is dropped).

/** A promise that rejects with `error()` after `ms`, unless cleared first. */
export function timeLimit(ms: number, error: () => Error): { expired: Promise<never>; clear(): void } {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return { expired, clear: () => clearTimeout(timer) };
}

export function withTimeout<T>(work: Promise<T>, ms: number, error: () => Error): Promise<T> {
  const limit = timeLimit(ms, error);
  return Promise.race([work, limit.expired]).finally(limit.clear);
}
