// The QEMU Machine Protocol, as much as berth uses: one connection to a QEMU's monitor
// socket, commands answered in order (QMP answers one command at a time), events kept for
// whoever waits for them. No npm package speaks QMP; the protocol is JSON lines.
import type net from 'node:net';
import readline from 'node:readline';
import { boundLines, connectUnix } from './unix-socket.js';

export class QmpError extends Error {
  override name = 'QmpError';
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export interface Qmp {
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
  /** Resolves at the next event named `name` (or one already seen since connecting). */
  event(name: string, timeoutMs: number): Promise<Record<string, unknown>>;
  close(): void;
}

export async function connectQmp(dir: string, name: string, timeoutMs = 5000): Promise<Qmp> {
  const socket: net.Socket = await connectUnix(dir, name, timeoutMs);
  const pending: Pending[] = [];
  const events: { event: string; data?: Record<string, unknown> }[] = [];
  const eventWaiters = new Set<() => void>();
  let greeted: (() => void) | null = null;
  let closedBecause: Error | null = null;

  boundLines(socket);
  const lines = readline.createInterface({ input: socket, crlfDelay: Infinity });
  // readline passes the socket's errors on (QEMU gone: ECONNRESET); onGone below hears them from the socket.
  lines.on('error', () => {});
  lines.on('line', (line) => {
    if (!line.trim()) return;
    let msg: { QMP?: unknown; return?: unknown; error?: { desc: string }; event?: string; data?: Record<string, unknown> } | null;
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      msg = null;
    }
    // Not QMP: the monitor is not what berth thinks it is; nothing more it says can be trusted.
    if (typeof msg !== 'object' || msg === null) {
      socket.destroy(new QmpError(`QEMU's monitor sent something that is not QMP: ${line.slice(0, 100)}`));
      return;
    }
    if (msg.QMP) greeted?.();
    else if (msg.event) {
      events.push({ event: msg.event, data: msg.data });
      for (const wake of eventWaiters) wake();
    } else if ('return' in msg) pending.shift()?.resolve(msg.return);
    else if (msg.error) pending.shift()?.reject(new QmpError(msg.error.desc));
  });
  const onGone = (err?: Error) => {
    closedBecause ??= err ?? new QmpError('QEMU closed its monitor (it exited)');
    for (const p of pending.splice(0)) p.reject(closedBecause);
    for (const wake of eventWaiters) wake();
  };
  socket.on('error', onGone);
  socket.on('close', () => onGone());

  const send = <T>(command: string, args?: Record<string, unknown>) =>
    new Promise<T>((resolve, reject) => {
      if (closedBecause) return reject(closedBecause);
      pending.push({ resolve: resolve as (v: unknown) => void, reject });
      socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new QmpError(`no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
    greeted = () => {
      clearTimeout(timer);
      resolve();
    };
  }).catch((err: Error) => {
    socket.destroy();
    throw err;
  });
  await send('qmp_capabilities');

  return {
    execute: send,
    event(name, waitMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const i = events.findIndex((e) => e.event === name);
          if (i >= 0) {
            done();
            resolve(events.splice(i, 1)[0]!.data ?? {});
          } else if (closedBecause) {
            done();
            reject(closedBecause);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new QmpError(`no ${name} event within ${waitMs} ms`));
        }, waitMs);
        const done = () => {
          clearTimeout(timer);
          eventWaiters.delete(check);
        };
        eventWaiters.add(check);
        check();
      });
    },
    close: () => socket.destroy(),
  };
}
