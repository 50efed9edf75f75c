// berth users: accounts on the berth server (admin).
import { unwrap } from '@berth/client';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { withExamples } from '../help.js';
import { listAll, PAGE_SIZE } from '../http/lists.js';
import { askSecret } from '../input/secrets.js';
import { formatTime } from '../output/format.js';
import { formatTable } from '../output/table.js';
import { resolveUserId } from '../resolve.js';

export function registerUserCommands(program: Command): void {
  const users = withExamples(
    program.command('users').description("berth's user accounts (admin)"),
    'berth users                             # the same as berth users list',
    'berth users create bob --email bob@example.com',
    'berth users disable bob',
  );

  withExamples(
    users
      .command('list', { isDefault: true })
      .alias('ls')
      .description('list users')
      .addOption(new Option('--role <role>', 'only users with this role').choices(['user', 'admin']))
      .option('--email <address>', 'only the user with this email address')
      .option('-q, --query <text>', 'only users whose username or email contains this')
      .action(async (opts: { role?: 'user' | 'admin'; email?: string; query?: string }, command: Command) => {
        const ctx = Context.of(command);
        const items = await listAll(async (cursor) =>
          unwrap(
            await ctx.api.GET('/v1/users', {
              params: { query: { limit: PAGE_SIZE, cursor, ...(opts.role && { role: opts.role }), ...(opts.email && { email: opts.email }), ...(opts.query && { q: opts.query }) } },
            }),
          ),
        );
        ctx.print(items, () =>
          items.length
            ? formatTable(
                ['username', 'role', 'email', 'disabled', 'created'],
                items.map((u) => [u.username, u.role, u.email, u.disabled ? 'yes' : 'no', formatTime(u.created_at)]),
              )
            : 'no users match',
        );
      }),
    'berth users',
    'berth users list --role admin',
    'berth users -q alice',
  );

  withExamples(
    users
      .command('create')
      .argument('<username>', 'the new username')
      .option('--email <address>', 'their email address')
      .option('--admin', 'make them an admin')
      .description('create a user; the password is asked for twice, or read from standard input')
      .action(async (username: string, opts: { email?: string; admin?: boolean }, command: Command) => {
        const ctx = Context.of(command);
        const password = await askSecret(`password for ${username}`, { confirm: true });
        const user = unwrap(
          await ctx.api.POST('/v1/users', { body: { username, password, ...(opts.email && { email: opts.email }), role: opts.admin ? 'admin' : 'user' } }),
        );
        ctx.print(user, () => `created ${user.role} ${user.username}`);
      }),
    'berth users create bob --email bob@example.com',
    "printf '%s\\n' \"$PASSWORD\" | berth users create carol --admin",
  );

  for (const [name, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    withExamples(
      users
        .command(name)
        .argument('<username>', 'the user (username or id)')
        .description(disabled ? 'stop a user from logging in; their sessions end at once' : 'let a disabled user log in again')
        .action(async (username: string, _opts, command: Command) => {
          const ctx = Context.of(command);
          const id = await resolveUserId(ctx, username);
          const user = unwrap(await ctx.api.PATCH('/v1/users/{id}', { params: { path: { id } }, body: { disabled } }));
          ctx.print(user, () => `${user.username} ${disabled ? 'disabled' : 'enabled'}`);
        }),
      `berth users ${name} bob`,
    );
  }

  withExamples(
    users
      .command('delete')
      .alias('rm')
      .argument('<username>', 'the user (username or id)')
      .description('delete a user: their sessions end and their reservations are released')
      .action(async (username: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const id = await resolveUserId(ctx, username);
        unwrap(await ctx.api.DELETE('/v1/users/{id}', { params: { path: { id } } }));
        ctx.print({ deleted: username, id }, () => `deleted ${username}`);
      }),
    'berth users delete bob',
  );
}
