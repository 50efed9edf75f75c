// TCP ports: one the system hands out now, whether a given one is free, and a free one
// from a range.
import net from 'node:net';

function listenOnce(port: number, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(port, host, () => {
      const { port: bound } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(bound));
    });
  });
}

/** A port on 127.0.0.1 nothing listens on right now (another process may take it later). */
export const freePort = (): Promise<number> => listenOnce(0);

/** Whether `port` can be bound on `host` (127.0.0.1 by default) right now. */
export const portIsFree = (port: number, host?: string): Promise<boolean> =>
  listenOnce(port, host).then(
    () => true,
    () => false,
  );

/**
 * A port of [first, last] that `taken` does not name and that can be bound on `host` now,
 * picked at random (several processes picking at once rarely meet); null when none is.
 */
export async function freePortIn([first, last]: [number, number], host: string, taken: ReadonlySet<number>): Promise<number | null> {
  const candidates: number[] = [];
  for (let p = first; p <= last; p++) if (!taken.has(p)) candidates.push(p);
  while (candidates.length) {
    const [port] = candidates.splice(Math.floor(Math.random() * candidates.length), 1);
    if (await portIsFree(port!, host)) return port!;
  }
  return null;
}
