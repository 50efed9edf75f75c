// Loopback TCP ports: one the system hands out now, and whether a given one is free.
import net from 'node:net';

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const { port: bound } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(bound));
    });
  });
}

/** A port on 127.0.0.1 nothing listens on right now (another process may take it later). */
export const freePort = (): Promise<number> => listenOnce(0);

export const portIsFree = (port: number): Promise<boolean> => listenOnce(port).then(() => true, () => false);
