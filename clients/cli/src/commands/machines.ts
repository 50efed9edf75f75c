// berth machines: the pool's machines for everyone; import, add, rm, maintenance, check
// and reprovisioned for admins.
import fs from 'node:fs';
import path from 'node:path';
import { unwrap, type components } from '@berth/client';
import { Argument, Option, type Command } from 'commander';
import { Context } from '../context.js';
import { EXIT, usageError } from '../errors.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { askSecret } from '../input/secrets.js';
import { collectTag, parsePort } from '../input/values.js';
import { formatTime } from '../output/format.js';
import { formatFields, formatTable } from '../output/table.js';

type Machine = components['schemas']['Machine'];
const STATUSES = ['available', 'reserved', 'maintenance', 'offline', 'needs_reprovision'] as const;

const formatTags = (tags: Record<string, string>) =>
  Object.entries(tags)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

function machineFields(m: Machine): string {
  return formatFields([
    ['name', m.name],
    ['status', m.status],
    ['reason', m.status_reason],
    ['type', m.type],
    ['tags', formatTags(m.tags)],
    // The login user is shown to admins only.
    ['address', `${m.username ? `${m.username}@` : ''}${m.host}:${m.port}`],
    ['sudo for accounts', m.allow_sudo ? 'yes' : 'no'],
    ['logs in with', m.keep_password ? 'the password it was given (kept)' : null],
    ['host key', m.host_key_fingerprint],
    ['reservation', m.reservation_id],
    ['last checked', formatTime(m.last_checked_at)],
  ]);
}

/** A file's text, or standard input for `-`. */
async function readInput(file: string): Promise<string> {
  if (file !== '-') {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw usageError(`cannot read ${file}: ${(err as Error).message}`);
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerMachineCommands(program: Command): void {
  const machines = withExamples(
    program.command('machines').description('the machines of the pool (import, add, rm, maintenance, check, reprovisioned: admins)'),
    'berth machines                          # the same as berth machines list',
    'berth machines show node-1',
    'berth machines import machines.yml      # admin',
    'berth machines maintenance node-1 on --reason "new disk"',
    'berth machines COMMAND --help',
  );

  withExamples(
    machines
      .command('list', { isDefault: true })
      .alias('ls')
      .description('list machines, optionally filtered')
      .addOption(new Option('--status <status>', 'only machines in this state').choices(STATUSES))
      .option('--type <type>', 'only machines of this type (e.g. server, gpu, vm)')
      .option('--tag <key=value>', 'only machines with this tag (repeat for several)', collectTag)
      .action(async (opts: { status?: (typeof STATUSES)[number]; type?: string; tag?: Record<string, string> }, command: Command) => {
        const ctx = Context.of(command);
        const tag = Object.entries(opts.tag ?? {}).map(([k, v]) => `${k}:${v}`);
        const items = await listAll(async (cursor) =>
          unwrap(
            await ctx.api.GET('/v1/machines', {
              params: { query: { limit: PAGE_SIZE, cursor, ...(opts.status && { status: opts.status }), ...(opts.type && { type: opts.type }), ...(tag.length && { tag }) } },
            }),
          ),
        );
        ctx.print(items, () =>
          items.length === 0
            ? 'no machines match'
            : formatTable(
                ['name', 'type', 'status', 'host', 'port', 'tags', 'reason'],
                items.map((m) => [m.name, m.type, m.status, m.host, m.port, formatTags(m.tags), m.status_reason]),
              ),
        );
      }),
    'berth machines',
    'berth machines list --status available --type gpu --tag rack=r2',
    'berth machines --json | jq -r ".[].name"',
  );

  withExamples(
    machines
      .command('show')
      .argument('<name>', 'the machine')
      .description("one machine's details, with its pinned host key")
      .action(async (name: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const machine = unwrap(await ctx.api.GET('/v1/machines/{name}', { params: { path: { name } } }));
        ctx.print(machine, () => machineFields(machine));
      }),
    'berth machines show node-1',
  );

  withExamples(
    machines
      .command('import')
      .argument('<file>', 'a YAML (.yml, .yaml) or JSON file, or - for YAML on standard input')
      .description('create or update machines from the machine-manager format (admin); exits 1 if any entry was refused')
      .action(async (file: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const text = await readInput(file);
        const json = path.extname(file).toLowerCase() === '.json';
        const result = unwrap(
          await ctx.api.POST('/v1/machines/import', {
            body: text as never,
            bodySerializer: (body: unknown) => body as string,
            headers: { 'content-type': json ? 'application/json' : 'application/yaml' },
          }),
        );
        ctx.print(result, () => {
          const summary = `created ${result.created}, updated ${result.updated}, refused ${result.errors.length}`;
          if (!result.errors.length) return summary;
          return `${summary}\n${formatTable(['entry', 'name', 'field', 'problem'], result.errors.map((e) => [e.index, e.name, e.pointer, e.message]))}`;
        });
        if (result.errors.length) process.exitCode = EXIT.failed;
      }),
    'berth machines import machines.yml',
    'cat machines.yml | berth machines import -',
    '',
    'machines.yml:',
    '  machines:',
    '    - name: node-1',
    '      host: 10.0.0.21',
    '      port: 22',
    '      user: root',
    '      private_key: |',
    '        -----BEGIN OPENSSH PRIVATE KEY-----',
    '        …',
    '      host_key: ssh-ed25519 AAAA…',
    '      type: server',
    '      tags: { rack: r2 }',
  );

  withExamples(
    machines
      .command('add')
      .argument('<name>', 'a name for the machine')
      .description('register one machine (admin); the password is asked for (or read from standard input) unless --private-key is given')
      .requiredOption('--host <host>', 'its address')
      .option('--port <port>', 'its SSH port', parsePort, 22)
      .requiredOption('--user <user>', 'the account berth logs in as: root, or one with passwordless sudo')
      .option('--private-key <file>', 'log in with this private key (unencrypted) instead of a password')
      .option('--host-key <key-or-file>', 'pin this host key: an OpenSSH public key line, a file holding one, or a SHA256:… fingerprint')
      .option('--type <type>', 'the machine type', 'server')
      .option('--tag <key=value>', 'a tag (repeat for several)', collectTag)
      .option('--sudo', 'give reservation accounts sudo: each tenant is root, and the machine waits to be reprovisioned after each')
      .option('--no-sudo', 'give reservation accounts no sudo (the default)')
      .option('--keep-password', 'keep logging in with the password instead of a key berth installs (the machine sees it at every login)')
      .action(
        async (
          name: string,
          opts: {
            host: string;
            port: number;
            user: string;
            privateKey?: string;
            hostKey?: string;
            type: string;
            tag?: Record<string, string>;
            sudo?: boolean;
            keepPassword?: boolean;
          },
          command: Command,
        ) => {
          const ctx = Context.of(command);
          const credential = opts.privateKey
            ? { private_key: await readInput(opts.privateKey) }
            : { password: await askSecret(`password of ${opts.user}@${opts.host}`), ...(opts.keepPassword && { keep_password: true }) };
          if (opts.privateKey && opts.keepPassword) throw usageError('--keep-password goes with a password, not --private-key');
          const hostKey = opts.hostKey && fs.existsSync(opts.hostKey) ? fs.readFileSync(opts.hostKey, 'utf8').trim() : opts.hostKey;
          const machine = unwrap(
            await ctx.api.POST('/v1/machines', {
              body: {
                name,
                host: opts.host,
                port: opts.port,
                username: opts.user,
                ...credential,
                ...(hostKey && { host_key: hostKey }),
                type: opts.type,
                tags: opts.tag ?? {},
                ...(opts.sudo !== undefined && { allow_sudo: opts.sudo }),
              },
            }),
          );
          ctx.print(machine, () => `added ${machine.name} (${machine.status})${machine.warning ? `\nwarning: ${machine.warning}` : ''}`);
        },
      ),
    'berth machines add node-1 --host 10.0.0.21 --user root --private-key ~/.ssh/berth_root --host-key /etc/ssh/ssh_host_ed25519_key.pub',
    "printf '%s\\n' \"$ROOT_PASSWORD\" | berth machines add node-2 --host 10.0.0.22 --user root --type gpu --tag gpu=a100",
  );

  withExamples(
    machines
      .command('rm')
      .alias('delete')
      .argument('<names...>', 'the machines')
      .description('remove machines from the pool (admin); a reserved machine is refused')
      .action(async (names: string[], _opts, command: Command) => {
        const ctx = Context.of(command);
        for (const name of names) {
          unwrap(await ctx.api.DELETE('/v1/machines/{name}', { params: { path: { name } } }));
          ctx.say(`removed ${name}`);
        }
        if (ctx.json) ctx.print({ removed: names }, () => undefined);
      }),
    'berth machines rm node-1 node-2',
  );

  withExamples(
    machines
      .command('maintenance')
      .argument('<name>', 'the machine')
      .addArgument(new Argument('<on|off>', 'enter or leave maintenance').choices(['on', 'off']))
      .option('--reason <text>', 'why (required with on)')
      .description('take a machine out of the pool for maintenance, or bring it back (admin)')
      .action(async (name: string, state: 'on' | 'off', opts: { reason?: string }, command: Command) => {
        const ctx = Context.of(command);
        let machine: Machine;
        if (state === 'on') {
          if (!opts.reason) throw usageError('say why: --reason "replacing a disk"');
          machine = unwrap(await ctx.api.PUT('/v1/machines/{name}/maintenance', { params: { path: { name } }, body: { reason: opts.reason } }));
        } else {
          machine = unwrap(await ctx.api.DELETE('/v1/machines/{name}/maintenance', { params: { path: { name } } }));
        }
        ctx.print(machine, () => `${machine.name} is ${machine.status}${machine.status_reason ? ` (${machine.status_reason})` : ''}`);
      }),
    'berth machines maintenance node-1 on --reason "replacing a disk"',
    'berth machines maintenance node-1 off',
  );

  withExamples(
    machines
      .command('check')
      .argument('<name>', 'the machine')
      .description('probe a machine over SSH now (admin); brings a machine that is reachable again back; exits 1 if unreachable')
      .action(async (name: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const result = unwrap(await ctx.api.POST('/v1/machines/{name}/check', { params: { path: { name } } }));
        ctx.print(result, () =>
          formatFields([
            ['reachable', result.reachable ? 'yes' : 'no'],
            ['latency', result.latency_ms === null ? null : `${result.latency_ms} ms`],
            ['host key', result.host_key_fingerprint],
            ['status', result.status],
            ['error', result.error],
          ]),
        );
        if (!result.reachable) process.exitCode = EXIT.failed;
      }),
    'berth machines check node-1',
  );

  withExamples(
    machines
      .command('reprovisioned')
      .argument('<name>', 'the machine')
      .description('return a machine in needs_reprovision to the pool once it is reinstalled (admin)')
      .action(async (name: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const machine = unwrap(await ctx.api.POST('/v1/machines/{name}/reprovisioned', { params: { path: { name } } }));
        ctx.print(machine, () => `${machine.name} is ${machine.status}`);
      }),
    'berth machines reprovisioned node-1',
  );
}
