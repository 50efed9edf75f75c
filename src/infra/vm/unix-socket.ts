// Connecting to a QEMU's Unix sockets in its VM directory, whatever that directory's path
// length: a socket address holds at most 107 bytes, and data directories can be deep. The
// path goes through /proc/self/fd/<the directory>, which the kernel follows like any
// directory; QEMU itself binds the sockets by relative name (it runs in that directory).
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';

/** The longest line berth reads from QEMU's monitor or a guest's channel (QMP answers berth asks for are a few KiB). */
export const MAX_LINE_BYTES = 64 * 1024;

/**
 * Ends `socket` with an error when what it sends holds a line longer than MAX_LINE_BYTES:
 * readline would buffer a line without a newline for ever, and what is at the other end
 * (a QEMU, a guest) is not trusted to send short ones.
 */
export function boundLines(socket: net.Socket): void {
  let unterminated = 0;
  socket.on('data', (chunk: Buffer) => {
    const newline = chunk.lastIndexOf(10);
    unterminated = newline === -1 ? unterminated + chunk.length : chunk.length - newline - 1;
    if (unterminated > MAX_LINE_BYTES) socket.destroy(new Error(`a line longer than ${MAX_LINE_BYTES} bytes`));
  });
}

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
