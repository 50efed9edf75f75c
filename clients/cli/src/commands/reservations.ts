// reserve, reservations, extend, release: a person's everyday commands.
import fs from 'node:fs';
import os from 'node:os';
import { unwrap, type components } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { usageError } from '../errors.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { collect, collectTag, parseCount, parseDurationMinutes } from '../input/values.js';
import { formatRemaining, formatTime, shortId } from '../output/format.js';
import { startProgress } from '../output/progress.js';
import { formatFields, formatTable } from '../output/table.js';
import { resolveReservationId } from '../resolve.js';

type Reservation = components['schemas']['Reservation'];
const STATUSES = ['provisioning', 'active', 'releasing', 'released', 'failed'] as const;

const expandHome = (file: string) => (file === '~' || file.startsWith('~/') ? os.homedir() + file.slice(1) : file);

/** The public key to install, read from a file; a private key given by mistake is refused, never sent. */
function readPublicKey(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(expandHome(file), 'utf8').trim();
  } catch (err) {
    throw usageError(`cannot read the key ${file}: ${(err as Error).message}`);
  }
  if (text.includes('PRIVATE KEY')) throw usageError(`${file} is a private key: give the public one (${file}.pub)`);
  if (!/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+/.test(text)) throw usageError(`${file} holds no OpenSSH public key`);
  return text;
}

const machineNames = (r: Reservation) => r.machines.map((m) => m.name).join(',');

function reservationFields(r: Reservation): [string, string | number | null][] {
  return [
    ['reservation', r.id],
    ['status', r.status],
    ['owner', r.owner],
    ['account', r.account.username],
    ['expires', r.expires_at ? `${formatTime(r.expires_at)} (in ${formatRemaining(r.seconds_remaining)})` : null],
    ['latest possible end', formatTime(r.max_expires_at)],
    ['released', r.released_at ? `${formatTime(r.released_at)} (${r.release_reason ?? ''})` : null],
    ['failure', r.failure_reason],
  ];
}

const machinesTable = (r: Reservation) =>
  formatTable(
    ['machine', 'host', 'port'],
    r.machines.map((m) => [m.name, m.host, m.port]),
  );

export function registerReservationCommands(program: Command): void {
  withExamples(
    program
      .command('reserve')
      .description('reserve machines: an account is made on each, with a password (shown once) and/or your public key')
      .addOption(new Option('-n, --count <n>', 'how many machines').argParser(parseCount).conflicts('machine'))
      .option('-m, --machine <name>', 'reserve exactly this machine (repeat for several)', collect)
      .option('--type <type>', 'only machines of this type')
      .option('--tag <key=value>', 'only machines with this tag (repeat for several)', collectTag)
      .option('--for <duration>', 'for how long: 30m, 2h, 1h30m, 1d (default: the server\'s, 1h)', parseDurationMinutes)
      .option('-k, --key <file>', 'install this SSH public key, e.g. ~/.ssh/id_ed25519.pub')
      .option('-u, --username <name>', 'the account name on the machines (default: your berth username)')
      .action(
        async (
          opts: { count?: number; machine?: string[]; type?: string; tag?: Record<string, string>; for?: number; key?: string; username?: string },
          command: Command,
        ) => {
          const ctx = Context.of(command);
          const body = {
            ...(opts.machine ? { machines: opts.machine } : { count: opts.count ?? 1 }),
            ...(opts.type && { type: opts.type }),
            ...(opts.tag && { tags: opts.tag }),
            ...(opts.for && { duration_minutes: opts.for }),
            ...(opts.key && { ssh_public_key: readPublicKey(opts.key) }),
            ...(opts.username && { username: opts.username }),
          };
          const count = opts.machine?.length ?? opts.count ?? 1;
          const progress = startProgress(`reserving ${count} machine${count === 1 ? '' : 's'} (accounts are being made)…`);
          let reservation: Reservation;
          try {
            reservation = unwrap(await ctx.api.POST('/v1/reservations', { body }));
          } finally {
            progress.done();
          }
          ctx.print(reservation, () => {
            const r = reservation;
            const lines = [
              `reservation ${r.id} ${r.status} until ${formatTime(r.expires_at)} (${formatRemaining(r.seconds_remaining)} left)`,
              formatFields([
                ['account', r.account.username],
                ...(r.account.password ? ([['password', `${r.account.password}   (shown only now)`]] as [string, string][]) : []),
              ]),
              machinesTable(r),
              `log in: berth ssh ${shortId(r.id)}${r.machines.length > 1 ? ' [MACHINE]' : ''}    release: berth release ${shortId(r.id)}`,
            ];
            return lines.join('\n');
          });
        },
      ),
    'berth reserve                                   # one machine for the default time',
    'berth reserve --count 2 --for 1h',
    'berth reserve --type gpu --tag gpu=a100 --for 1h30m --key ~/.ssh/id_ed25519.pub',
    'berth reserve -m node-1 -m node-2 --username ci-runner',
  );

  const reservations = withExamples(
    program.command('reservations').alias('res').description('your reservations'),
    'berth reservations                      # the same as berth reservations list',
    'berth res show 3f1e6a4b',
  );

  withExamples(
    reservations
      .command('list', { isDefault: true })
      .alias('ls')
      .description('your reservations (active ones by default), with the time left')
      .addOption(new Option('--status <status>', 'only reservations in this state, or "any"').choices([...STATUSES, 'any']).default('active'))
      .option('--all', "everyone's reservations (admin)")
      .option('--user <username>', "this user's reservations (admin)")
      .action(async (opts: { status: (typeof STATUSES)[number] | 'any'; all?: boolean; user?: string }, command: Command) => {
        const ctx = Context.of(command);
        const items = await listAll(async (cursor) =>
          unwrap(
            await ctx.api.GET('/v1/reservations', {
              params: {
                query: {
                  limit: PAGE_SIZE,
                  cursor,
                  ...(opts.status !== 'any' && { status: opts.status }),
                  ...(opts.all && { all: 'true' as const }),
                  ...(opts.user && { user: opts.user }),
                },
              },
            }),
          ),
        );
        const others = opts.all || opts.user;
        ctx.print(items, () =>
          items.length === 0
            ? `no ${opts.status === 'any' ? '' : `${opts.status} `}reservations`
            : formatTable(
                ['id', ...(others ? ['owner'] : []), 'status', 'machines', 'account', 'expires', 'left'],
                items.map((r) => [
                  shortId(r.id),
                  ...(others ? [r.owner] : []),
                  r.status,
                  machineNames(r),
                  r.account.username,
                  formatTime(r.expires_at),
                  r.status === 'active' ? formatRemaining(r.seconds_remaining) : '-',
                ]),
              ),
        );
      }),
    'berth reservations',
    'berth reservations list --status any',
    'berth reservations --all --json        # admin',
  );

  withExamples(
    reservations
      .command('show')
      .argument('<id>', 'the reservation (its first characters are enough)')
      .description('one reservation and its machines')
      .action(async (id: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const r = unwrap(await ctx.api.GET('/v1/reservations/{id}', { params: { path: { id: await resolveReservationId(ctx, id) } } }));
        ctx.print(r, () => `${formatFields(reservationFields(r))}\n${machinesTable(r)}`);
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
}

