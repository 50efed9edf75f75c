// berth reserve: machines now, in the queue until they are free (--wait), or booked ahead
// of time (--at); with --follow it waits until they are ready, as a plain reserve would.
import { BerthProblemError, unwrap } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT, toCliError, usageError } from '../errors.js';
import { withExamples } from '../help.js';
import { earliestStart, type Reservation, type ReservationRequest } from '../http/reservation.js';
import { askSecret } from '../input/secrets.js';
import { parseStartTime, START_TIME_FORMATS } from '../input/times.js';
import { collect, collectTag, parseCount, parseDurationMinutes } from '../input/values.js';
import { formatTime, shortId } from '../output/format.js';
import { startProgress } from '../output/progress.js';
import { describeQueued, describeScheduled, describeStarted } from '../output/reservations.js';
import { defaultPublicKey, readPublicKey, type PublicKey } from '../ssh/public-key.js';

interface ReserveOptions {
  count?: number;
  machine?: string[];
  type?: string;
  tag?: Record<string, string>;
  for?: number;
  /** A file, false for --no-key, undefined for the default key. */
  key?: string | false;
  password?: boolean;
  username?: string;
  wait?: number;
  at?: string;
  follow?: boolean;
}

/** How often --follow asks: every few seconds, less often while a booking's start is far off. */
function pollDelayMs(r: Reservation): number {
  const untilStart = r.status === 'scheduled' && r.start_at ? Date.parse(r.start_at) - Date.now() : 0;
  return Math.min(60_000, Math.max(2_000, untilStart / 2));
}

/** The key to install: the one named, none when told so (or a password is given), else the usual one. */
async function keyToSend(opts: ReserveOptions): Promise<PublicKey | null> {
  if (typeof opts.key === 'string') return readPublicKey(opts.key);
  if (opts.key === false || opts.password) return null;
  return defaultPublicKey();
}

/** A full pool: the refusal, and when the request could start instead (the pool's plan says). */
function withEarliestStart(err: unknown, opts: ReserveOptions): unknown {
  if (!(err instanceof BerthProblemError) || err.problem.code !== 'insufficient_capacity' || opts.wait || opts.at) return err;
  const when = earliestStart(err.problem);
  if (!when) return err;
  const at = formatTime(when);
  return new CliError(`${toCliError(err).message}; it could start at ${at}: add --wait DURATION to queue for it, or --at "${at}" to book it`, EXIT.refused);
}

/** Why a queued or booked reservation ended before its machines were ready. */
function endedWithoutStarting(r: Reservation): CliError {
  const id = shortId(r.id);
  if (r.status === 'failed') return new CliError(`reservation ${id} failed: ${r.failure_reason ?? 'no reason given'}`, EXIT.failed);
  // A wait that ran out is a full pool, later: the same exit code as the refusal of a plain reserve.
  if (r.release_reason === 'expired' && r.activated_at === null) {
    return new CliError(`reservation ${id} gave up waiting: no machines were free by ${formatTime(r.wait_until)}`, EXIT.refused);
  }
  return new CliError(`reservation ${id} ended before it started: ${r.status}${r.release_reason ? ` (${r.release_reason})` : ''}`, EXIT.failed);
}

/** Asks berth about `reservation` until it is active (returned) or ended (thrown). */
async function followUntilStarted(ctx: Context, reservation: Reservation): Promise<Reservation> {
  const id = shortId(reservation.id);
  const waiting = (r: Reservation) =>
    r.status === 'queued'
      ? `queued: position ${r.queue_position ?? '?'}, estimated start ${r.estimated_start ? formatTime(r.estimated_start) : 'unknown'}`
      : `${r.status}: starts ${formatTime(r.start_at)}`;
  ctx.note(`waiting for reservation ${id} to start (Ctrl-C stops waiting, not the reservation: berth cancel ${id})`);
  const progress = startProgress(`${waiting(reservation)}…`);
  let r = reservation;
  try {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, pollDelayMs(r)));
      r = unwrap(await ctx.api.GET('/v1/reservations/{id}', { params: { path: { id: r.id } } }));
      if (r.status === 'active') return r;
      if (r.status === 'releasing' || r.status === 'released' || r.status === 'failed') throw endedWithoutStarting(r);
      progress.update(`${waiting(r)}…`);
    }
  } finally {
    progress.done();
  }
}

export function registerReserveCommand(program: Command): void {
  withExamples(
    program
      .command('reserve')
      .summary('reserve machines: now, when they are free (--wait), or booked ahead (--at)')
      .description(
        'reserve machines: an account is made on each, with your public key (by default ~/.ssh/id_ed25519.pub, else ' +
          "the ssh-agent's first key) and/or a password (generated and shown once when no key is sent). Without " +
          '--wait or --at a full pool is refused (exit 4); with --wait the request queues; with --at it is booked.',
      )
      .addOption(new Option('-n, --count <n>', 'how many machines').argParser(parseCount).conflicts('machine'))
      .option('-m, --machine <name>', 'reserve exactly this machine (repeat for several)', collect)
      .option('--type <type>', 'only machines of this type')
      .option('--tag <key=value>', 'only machines with this tag (repeat for several)', collectTag)
      .option('--for <duration>', 'for how long: 30m, 2h, 1h30m, 1d (default: the server\'s, 1h)', parseDurationMinutes)
      .option('-k, --key <file>', "install this SSH public key (default: ~/.ssh/id_ed25519.pub, else the ssh-agent's first key)")
      .option('--no-key', 'install no key: berth generates a password, shown once (unless --password)')
      .option('--password', "set the account's password: asked for without echo, or the first line of standard input (no default key is sent)")
      .option('-u, --username <name>', 'the account name on the machines (default: your berth username)')
      .addOption(
        new Option('--wait <duration>', 'if the machines are not free now, queue for them this long: 30m, 2h, or minutes (answers "queued")')
          .argParser(parseDurationMinutes)
          .conflicts('at'),
      )
      .addOption(new Option('--at <time>', `book the machines from this start: ${START_TIME_FORMATS}`).argParser(parseStartTime))
      .option('--follow', 'with --wait or --at: stay until the machines are ready, then print them as a plain reserve does')
      .action(async (opts: ReserveOptions, command: Command) => {
        const ctx = Context.of(command);
        if (opts.follow && !opts.wait && !opts.at) throw usageError('--follow waits for a queued or booked reservation: add --wait or --at');
        const key = await keyToSend(opts);
        const password = opts.password ? await askSecret("the account's password") : undefined;
        const body: ReservationRequest = {
          ...(opts.machine ? { machines: opts.machine } : { count: opts.count ?? 1 }),
          ...(opts.type && { type: opts.type }),
          ...(opts.tag && { tags: opts.tag }),
          ...(opts.for && { duration_minutes: opts.for }),
          ...(key && { ssh_public_key: key.line }),
          ...(password && { password }),
          ...(opts.username && { username: opts.username }),
          ...(opts.wait && { wait_minutes: opts.wait }),
          ...(opts.at && { start_at: opts.at }),
        };
        const count = opts.machine?.length ?? opts.count ?? 1;
        const machines = `${count} machine${count === 1 ? '' : 's'}`;
        const progress = startProgress(opts.at ? `booking ${machines} from ${formatTime(opts.at)}…` : `reserving ${machines} (accounts are being made)…`);
        let reservation: Reservation;
        try {
          reservation = unwrap(await ctx.api.POST('/v1/reservations', { body }));
        } catch (err) {
          throw withEarliestStart(err, opts);
        } finally {
          progress.done();
        }

        const waiting = reservation.status === 'queued' || reservation.status === 'scheduled';
        const describeWaiting = (r: Reservation) => (r.status === 'queued' ? describeQueued(r) : describeScheduled(r, key, !key && !password));
        if (!waiting) return ctx.print(reservation, () => describeStarted(reservation, key));
        if (!opts.follow) return ctx.print(reservation, () => describeWaiting(reservation));
        ctx.say(describeWaiting(reservation));
        const started = await followUntilStarted(ctx, reservation);
        ctx.print(started, () => describeStarted(started, key));
      }),
    'berth reserve                                   # one machine for the default time, with your key',
    'berth reserve --count 2 --for 1h',
    'berth reserve --type gpu --tag gpu=a100 --for 1h30m --key ~/.ssh/work.pub',
    'berth reserve -m node-1 -m node-2 --username ci-runner --no-key',
    'berth reserve --count 2 --wait 1h --follow        # queue for up to an hour, stay until they are ready',
    'berth reserve --count 4 --for 2h --at "2026-12-09 09:00"',
  );
}
