// Notices of a coming end on real sshd machines, read from the terminal of a real login
// (a shell with a pty, as a person's ssh opens it), with two berth instances on one
// database: each notice reaches each logged-in terminal once, is raised once, and is
// claimed once in reservation_notices, whichever instance ticks.
import { Writable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventBus, type DomainEvent } from '../../src/events/bus.js';
import type { Database } from '../../src/infra/database.js';
import { generateSshKeyPair } from '../../src/infra/ssh.js';
import { createNoticeSender, type NoticeTick } from '../../src/modules/reservations/notices.js';
import { createTestApp, json, userSession, type Session, type TestApp } from '../helpers/app.js';
import { listen } from '../helpers/events.js';
import { createPool, type Pool } from '../helpers/pool.js';

// Notices at 10 and 2 minutes; the notice job's own ticks every 30 s (a tick between two
// steps of a test changes who sends, never how often).
const ENV = { BERTH_NOTICE_MINUTES: '10,2', BERTH_SCHEDULER_INTERVAL_SECONDS: '3600' };

let pool: Pool;
let other: TestApp;
let heardA: ReturnType<typeof listen>;
let heardB: ReturnType<typeof listen>;
/** What the second instance logged (warnings and worse). */
let logsB = '';
const userKey = generateSshKeyPair();

beforeAll(async () => {
  pool = await createPool(3, ENV, 'ntc');
  const logStream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logsB += chunk.toString();
      done();
    },
  });
  other = await createTestApp({ ...ENV, LOG_LEVEL: 'warn' }, { shareWith: pool.t, instanceId: 'instance-b', logStream });
  heardA = listen(pool.t.app.events);
  heardB = listen(other.app.events);
});
afterAll(async () => {
  await other.close();
  await pool.close();
});

interface Reservation {
  id: string;
  account: { username: string };
  machines: { name: string; host: string; port: number }[];
}

async function reserve(s: Session, count: number): Promise<Reservation> {
  const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: s.auth, payload: { count, duration_minutes: 60, ssh_public_key: userKey.public } });
  expect(res.statusCode).toBe(201);
  return json(res);
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A login shell of the account with a pty, as `ssh host` opens one: what its terminal shows. */
async function loginShell(machine: { host: string; port: number }, username: string) {
  const ssh = new NodeSSH();
  await ssh.connect({ host: machine.host, port: machine.port, username, privateKey: userKey.private, readyTimeout: 10_000, tryKeyboard: false });
  ssh.connection?.on('error', () => {});
  const channel = await ssh.requestShell({ term: 'xterm', cols: 200, rows: 50 });
  let screen = '';
  channel.on('data', (d: Buffer) => (screen += d.toString()));
  // The shell runs (and holds its terminal) once it answers; the typed line echoes, the sum only comes back.
  channel.write('echo shell-$((40 + 2))-ready\n');
  await until(() => screen.includes('shell-42-ready'), 'the login shell');
  return {
    /** The notice lines the terminal has shown so far. */
    notices: () => screen.split(/\r?\n/).filter((line) => line.includes('berth: this reservation ends at')).map((line) => line.trim()),
    close: () => ssh.dispose(),
  };
}

const expectedLine = (id: string, end: Date) => `berth: this reservation ends at ${end.toISOString().slice(11, 16)} UTC — berth extend ${id}`;

/** Time passes: the reservation now ends `minutes` from now (its notices' times move with it). */
async function endIn(id: string, minutes: number): Promise<Date> {
  const { expiresAt } = await pool.t.prisma.reservation.findUniqueOrThrow({ where: { id } });
  const end = new Date(Date.now() + minutes * 60_000);
  const shift = end.getTime() - expiresAt!.getTime();
  await pool.t.prisma.reservation.update({ where: { id }, data: { expiresAt: end } });
  for (const n of await pool.t.prisma.reservationNotice.findMany({ where: { reservationId: id } })) {
    await pool.t.prisma.reservationNotice.update({
      where: { reservationId_minutesBefore: { reservationId: id, minutesBefore: n.minutesBefore } },
      data: { sentAt: new Date(n.sentAt.getTime() + shift) },
    });
  }
  return end;
}

/** Both instances tick the notice job at the same moment. */
const tickBoth = () => Promise.all([pool.t.app.jobs.runNow<NoticeTick>('notices'), other.app.jobs.runNow<NoticeTick>('notices')]);

/** The `reservation.expiring` events both instances raised since the last call. */
const expiring = () => [...heardA.take(), ...heardB.take()].filter((e) => e.type === 'reservation.expiring') as Omit<DomainEvent<'reservation.expiring'>, 'at'>[];

const noticeRows = (id: string) => pool.t.prisma.reservationNotice.findMany({ where: { reservationId: id }, orderBy: { minutesBefore: 'asc' } });

/** Lets any late write reach the terminals before they are counted. */
const settle = () => new Promise((r) => setTimeout(r, 1000));

const releaseAll = async () => {
  const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations/release-all', headers: pool.admin.auth });
  expect(res.statusCode).toBe(200);
};

describe('the notice before a reservation ends', () => {
  let alice: Session;
  let r: Reservation;
  let shells: Awaited<ReturnType<typeof loginShell>>[];
  let firstLine: string;

  beforeAll(async () => {
    alice = await userSession(pool.t, 'alice');
  });
  afterAll(async () => {
    for (const shell of shells ?? []) shell.close();
    await releaseAll();
  });

  it('reaches the terminal of the logged-in session on each machine, once across two instances', async () => {
    r = await reserve(alice, 2);
    shells = await Promise.all(r.machines.map((m) => loginShell(m, r.account.username)));
    // An hour left: nothing is due.
    await tickBoth();
    expect(await noticeRows(r.id)).toEqual([]);
    expiring();

    const end = await endIn(r.id, 5);
    await tickBoth();
    await until(() => shells.every((s) => s.notices().length > 0), 'the notice on both terminals');
    // Again, on both: nothing more.
    const again = await tickBoth();
    expect(again.map((t) => t.sent)).toEqual([0, 0]);
    await settle();

    firstLine = expectedLine(r.id, end);
    for (const shell of shells) expect(shell.notices()).toEqual([firstLine]);
    expect(await noticeRows(r.id)).toMatchObject([{ minutesBefore: 10 }]);
    expect(expiring()).toEqual([{ type: 'reservation.expiring', reservationId: r.id, userId: alice.userId, expiresAt: end, minutesLeft: 10 }]);
  });

  it('then the 2-minute notice, once', async () => {
    const end = await endIn(r.id, 1.5);
    await tickBoth();
    await until(() => shells.every((s) => s.notices().length === 2), 'the second notice on both terminals');
    await tickBoth();
    await settle();
    for (const shell of shells) expect(shell.notices()).toEqual([firstLine, expectedLine(r.id, end)]);
    expect((await noticeRows(r.id)).map((n) => n.minutesBefore)).toEqual([2, 10]);
    expect(expiring()).toEqual([{ type: 'reservation.expiring', reservationId: r.id, userId: alice.userId, expiresAt: end, minutesLeft: 2 }]);
  });

  it('after an extension, the new end gets its own notices', async () => {
    const extended = await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${r.id}/extend`, headers: alice.auth, payload: { minutes: 30 } });
    expect(extended.statusCode).toBe(200);
    // The notices told of the old end; 25 minutes later the new one is 5 minutes away.
    await tickBoth();
    expect(expiring()).toEqual([]);
    const end = await endIn(r.id, 5);
    await tickBoth();
    await until(() => shells.every((s) => s.notices().length === 3), 'the notice of the new end');
    await tickBoth();
    await settle();
    for (const shell of shells) expect(shell.notices().at(-1)).toBe(expectedLine(r.id, end));
    for (const shell of shells) expect(shell.notices()).toHaveLength(3);
    expect((await noticeRows(r.id)).map((n) => n.minutesBefore)).toEqual([2, 10]);
    expect(expiring()).toEqual([{ type: 'reservation.expiring', reservationId: r.id, userId: alice.userId, expiresAt: end, minutesLeft: 10 }]);
  });
});

describe('notices the job comes to late, or that reach no one', () => {
  afterAll(releaseAll);

  it('a reservation found with a minute left gets only the 2-minute notice; the 10-minute one is marked sent with it', async () => {
    const bob = await userSession(pool.t, 'bob');
    const r = await reserve(bob, 1);
    const shell = await loginShell(r.machines[0]!, r.account.username);
    try {
      const end = await endIn(r.id, 1);
      await tickBoth();
      await until(() => shell.notices().length > 0, 'the notice');
      await tickBoth();
      await settle();
      expect(shell.notices()).toEqual([expectedLine(r.id, end)]);
      expect((await noticeRows(r.id)).map((n) => n.minutesBefore)).toEqual([2, 10]);
      expect(expiring()).toEqual([{ type: 'reservation.expiring', reservationId: r.id, userId: bob.userId, expiresAt: end, minutesLeft: 2 }]);
    } finally {
      shell.close();
    }
  });

  it('a reservation with no logged-in session records its claim and raises its event, once', async () => {
    const carol = await userSession(pool.t, 'carol');
    const r = await reserve(carol, 1);
    const end = await endIn(r.id, 5);
    const ticks = await tickBoth();
    const again = await tickBoth();
    expect(again.map((t) => t.sent)).toEqual([0, 0]);
    // Whichever tick sent it (this test's or a scheduled one), it reached no terminal.
    for (const t of [...ticks, ...again]) expect(t.terminals).toBe(0);
    expect(await noticeRows(r.id)).toMatchObject([{ minutesBefore: 10 }]);
    expect(expiring()).toEqual([{ type: 'reservation.expiring', reservationId: r.id, userId: carol.userId, expiresAt: end, minutesLeft: 10 }]);
  });
});

describe('a claim another process wins between the read and the claim', () => {
  afterAll(releaseAll);

  it('sends nothing, raises nothing, and the tick goes on', async () => {
    const erin = await userSession(pool.t, 'erin');
    const r = await reserve(erin, 1);
    // The race made certain: right after each read of due reservations, "another process"
    // inserts the notice row of every reservation read.
    let reads = 0;
    const real = pool.t.prisma;
    const raced = new Proxy(real, {
      get(target, prop) {
        if (prop === '$rows') {
          return async <T>(sql: string, values: unknown[]) => {
            const rows = await target.$rows<T & { id: string }>(sql, values);
            for (const row of rows) {
              reads++;
              await target.reservationNotice.create({ data: { reservationId: row.id, minutesBefore: values[2] as number, sentAt: new Date() } });
            }
            return rows;
          };
        }
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    }) as Database;
    const bus = createEventBus({ error: () => {} });
    const heard = listen(bus);
    const sender = createNoticeSender({
      prisma: raced,
      access: { open: () => Promise.reject(new Error('no machine is reached for a notice this process lost')) },
      events: bus,
      noticeMinutes: [10, 2],
      log: { warn: () => {} },
    });
    await endIn(r.id, 5);
    expect(await sender.sendDue()).toEqual({ sent: 0, terminals: 0 });
    expect(reads).toBe(1);
    expect(heard.take()).toEqual([]);
    expect(await noticeRows(r.id)).toMatchObject([{ minutesBefore: 10 }]);
    expiring();
  });
});

describe('a machine that does not answer', () => {
  it('is logged and skipped: the other machines hear the notice, and it counts as sent', { timeout: 90_000 }, async () => {
    const dave = await userSession(pool.t, 'dave');
    const r = await reserve(dave, 2);
    const [up, down] = r.machines.map((m) => ({ ...m, test: pool.machines.find((x) => x.name === m.name)! }));
    const shell = await loginShell(up!, r.account.username);
    await down!.test.pause();
    try {
      const end = await endIn(r.id, 5);
      // The instance whose log the test reads sends it.
      expect(await other.app.jobs.runNow<NoticeTick>('notices')).toEqual({ sent: 1, terminals: 1 });
      await until(() => shell.notices().length > 0, 'the notice on the machine that answers');
      expect(shell.notices()).toEqual([expectedLine(r.id, end)]);
      const warning = logsB.split('\n').find((line) => line.includes('could not write a reservation notice'));
      expect(JSON.parse(warning ?? '{}')).toMatchObject({ machine: down!.name, reservation: r.id });
      expect(await noticeRows(r.id)).toMatchObject([{ minutesBefore: 10 }]);
      expect(expiring()).toHaveLength(1);
      // No retry: the next ticks leave the silent machine alone.
      const again = await tickBoth();
      expect(again.map((t) => t.sent)).toEqual([0, 0]);
    } finally {
      shell.close();
      await down!.test.unpause();
    }
    await releaseAll();
  });
});
