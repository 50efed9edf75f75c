// Waiting for something with a limit: the answer, or `error()` once `ms` passed (a late
// answer is dropped).

export function withTimeout<T>(work: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}
