// What berth reads from a QEMU's sockets is bounded and checked: a QEMU taken over by its
// guest (a fault no test can cause for real, so a stand-in plays the other end here) can
// make berth drop the connection, never crash it or make it buffer without end.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectQmp } from '../../src/infra/vm/qmp.js';
import { boundLines, connectUnix, MAX_LINE_BYTES } from '../../src/infra/vm/unix-socket.js';

const dirs: string[] = [];
const servers: net.Server[] = [];

/** A Unix socket in a fresh directory whose other end does `serve` with each connection. */
async function standIn(serve: (peer: net.Socket) => void): Promise<{ dir: string; name: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-qemu-sockets-'));
  dirs.push(dir);
  const server = net.createServer(serve);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path.join(dir, 'sock'), resolve));
  return { dir, name: 'sock' };
}

afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const closed = (socket: net.Socket) => new Promise<Error | undefined>((resolve) => socket.once('close', () => resolve(socket.errored ?? undefined)));

describe('lines from a QEMU socket', () => {
  it('are read while they end within the bound', async () => {
    const where = await standIn((peer) => peer.write(`${'x'.repeat(MAX_LINE_BYTES - 1)}\n`.repeat(3)));
    const socket = await connectUnix(where.dir, where.name, 1000);
    boundLines(socket);
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(socket.destroyed).toBe(false);
    expect(received).toBe(3 * MAX_LINE_BYTES);
    socket.destroy();
  });

  it('end the connection when one goes on past the bound without a newline', async () => {
    const where = await standIn((peer) => peer.write('y'.repeat(MAX_LINE_BYTES + 1)));
    const socket = await connectUnix(where.dir, where.name, 1000);
    boundLines(socket);
    expect((await closed(socket))?.message).toMatch(/a line longer than/);
  });
});

describe("QEMU's monitor", () => {
  it('is dropped, with a clear error, when it sends something that is not QMP', async () => {
    const where = await standIn((peer) => {
      peer.write('{"QMP": {"version": {}, "capabilities": []}}\n');
      peer.once('data', () => peer.write('this is not JSON\n'));
    });
    await expect(connectQmp(where.dir, where.name, 1000)).rejects.toThrow(/not QMP: this is not JSON/);
  });

  it('answers commands in order while it speaks QMP', async () => {
    const where = await standIn((peer) => {
      peer.write('{"QMP": {"version": {}, "capabilities": []}}\n');
      let n = 0;
      peer.on('data', (chunk: Buffer) => {
        for (const _ of chunk.toString().trim().split('\n')) peer.write(`{"return": {"n": ${n++}}}\n`);
      });
    });
    const qmp = await connectQmp(where.dir, where.name, 1000);
    expect(await qmp.execute('query-status')).toEqual({ n: 1 }); // 0 answered qmp_capabilities
    qmp.close();
  });
});
