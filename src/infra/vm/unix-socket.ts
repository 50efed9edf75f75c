// Connecting to a QEMU's Unix sockets in its VM directory, whatever that directory's path
// length: a socket address holds at most 107 bytes, and data directories can be deep. The
// path goes through /proc/self/fd/<the directory>, which the kernel follows like any
// directory; QEMU itself binds the sockets by relative name (it runs in that directory).
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';

export async function connectUnix(dir: string, name: string, timeoutMs: number): Promise<net.Socket> {
  const dirHandle = await fs.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  const dirFd = dirHandle.fd;
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ path: `/proc/self/fd/${dirFd}/${name}` });
    const timer = setTimeout(() => fail(new Error(`no answer on ${name} within ${timeoutMs} ms`)), timeoutMs);
    function fail(err: Error) {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    }
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', fail);
      // QEMU gone (it exited, or a restore failed): the socket errors (ECONNRESET), then
      // closes. Its holders watch 'close'; an error without a listener would end berth.
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', fail);
  }).finally(() => dirHandle.close());
}
