// reservations, extend, release, cancel: a person's everyday commands after `reserve`.
import { unwrap } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { usageError } from '../errors.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { CURRENT_STATUSES, RESERVATION_STATUSES, statusFilter, type Reservation, type ReservationStatus } from '../http/reservation.js';
import { parseDurationMinutes } from '../input/values.js';
import { formatRemaining, formatTime, shortId } from '../output/format.js';
import { startProgress } from '../output/progress.js';
import { describeReservation, machineNames, reservationsTable } from '../output/reservations.js';
import { resolveReservationId } from '../resolve.js';

export function registerReservationCommands(program: Command): void {
  const reservations = withExamples(
    program.command('reservations').alias('res').description('your reservations'),
    'berth reservations                      # the same as berth reservations list',
    'berth res show 3f1e6a4b',
  );

  withExamples(
    reservations
      .command('list', { isDefault: true })
      .alias('ls')
      .description('your reservations (by default the current ones: queued, scheduled, starting and active), with the time left')
      .addOption(new Option('--status <status>', 'only reservations in this state, or "any"').choices([...RESERVATION_STATUSES, 'any']))
      .option('--all', "everyone's reservations (admin)")
      .option('--user <username>', "this user's reservations (admin)")
      .action(async (opts: { status?: ReservationStatus | 'any'; all?: boolean; user?: string }, command: Command) => {
        const ctx = Context.of(command);
        const list = (status?: ReservationStatus) =>
          listAll(async (cursor) =>
            unwrap(
              await ctx.api.GET('/v1/reservations', {
                params: {
                  query: {
                    limit: PAGE_SIZE,
                    cursor,
                    ...(status && { status: statusFilter(status) }),
                    ...(opts.all && { all: 'true' as const }),
                    ...(opts.user && { user: opts.user }),
                  },
                },
              }),
            ),
          );
        // The list filter takes one status: the current ones are asked for one by one, newest first as berth lists them.
        const items: Reservation[] = opts.status
          ? await list(opts.status === 'any' ? undefined : opts.status)
          : (await Promise.all(CURRENT_STATUSES.map((status) => list(status)))).flat().sort((a, b) => b.created_at.localeCompare(a.created_at));
        ctx.print(items, () =>
          items.length === 0
            ? `no ${opts.status === 'any' ? '' : `${opts.status ?? 'active, queued or scheduled'} `}reservations`
            : reservationsTable(items, Boolean(opts.all || opts.user)),
        );
      }),
    'berth reservations                      # queued, scheduled and active ones',
    'berth reservations list --status any',
    'berth reservations --all --json        # admin',
  );

  withExamples(
    reservations
      .command('show')
      .argument('<id>', 'the reservation (its first characters are enough)')
      .description('one reservation and its machines (and, once, the password berth generated for a queued or booked one)')
      .action(async (id: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const r: Reservation = unwrap(await ctx.api.GET('/v1/reservations/{id}', { params: { path: { id: await resolveReservationId(ctx, id) } } }));
        ctx.print(r, () => describeReservation(r));
      }),
    'berth reservations show 3f1e6a4b',
  );

  withExamples(
    program
      .command('extend')
      .argument('<id>', 'the reservation (its first characters are enough)')
      .requiredOption('--by <duration>', 'how much longer: 30m, 2h, 1h30m', parseDurationMinutes)
      .description('keep a reservation longer (up to the server\'s limit)')
      .action(async (id: string, opts: { by: number }, command: Command) => {
        const ctx = Context.of(command);
        const reservationId = await resolveReservationId(ctx, id);
        const r = unwrap(await ctx.api.POST('/v1/reservations/{id}/extend', { params: { path: { id: reservationId } }, body: { minutes: opts.by } }));
        ctx.print(r, () => `reservation ${shortId(r.id)} now ends ${formatTime(r.expires_at)} (in ${formatRemaining(r.seconds_remaining)})`);
      }),
    'berth extend 3f1e6a4b --by 30m',
  );

  withExamples(
    program
      .command('release')
      .argument('[ids...]', 'the reservations (their first characters are enough)')
      .option('--all', 'every active reservation of yours')
      .description('give machines back now: the accounts are removed (VMs are reset)')
      .action(async (ids: string[], opts: { all?: boolean }, command: Command) => {
        const ctx = Context.of(command);
        if (opts.all && ids.length) throw usageError('give reservation ids or --all, not both');
        if (!opts.all && !ids.length) throw usageError('which reservation? give its id, or --all for every one of yours');
        const targets = opts.all
          ? (
              await listAll(async (cursor) =>
                unwrap(await ctx.api.GET('/v1/reservations', { params: { query: { limit: PAGE_SIZE, cursor, status: 'active' } } })),
              )
            ).map((r) => r.id)
          : await Promise.all(ids.map((id) => resolveReservationId(ctx, id)));
        const released: Reservation[] = [];
        const progress = startProgress(`releasing ${targets.length} reservation${targets.length === 1 ? '' : 's'}…`);
        try {
          for (const id of targets) {
            progress.update(`releasing ${shortId(id)} (${released.length + 1}/${targets.length})…`);
            released.push(unwrap(await ctx.api.DELETE('/v1/reservations/{id}', { params: { path: { id } } })));
          }
        } finally {
          progress.done();
        }
        ctx.print(released, () =>
          released.length === 0 ? 'no active reservations to release' : released.map((r) => `released ${shortId(r.id)} (${machineNames(r)})`).join('\n'),
        );
      }),
    'berth release 3f1e6a4b',
    'berth release --all',
  );

  withExamples(
    program
      .command('cancel')
      .argument('<id>', 'the reservation (its first characters are enough)')
      .description('cancel a queued request or a booking before it starts (an active reservation is released, as by release)')
      .action(async (id: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const reservationId = await resolveReservationId(ctx, id);
        const r: Reservation = unwrap(await ctx.api.DELETE('/v1/reservations/{id}', { params: { path: { id: reservationId } } }));
        const cancelled = r.release_reason === 'cancelled' || r.release_reason === 'cancelled_by_admin';
        ctx.print(r, () =>
          cancelled ? `cancelled ${shortId(r.id)}: it will not start` : `released ${shortId(r.id)} (${machineNames(r)}): it had started`,
        );
      }),
    'berth cancel 3f1e6a4b',
  );
}
