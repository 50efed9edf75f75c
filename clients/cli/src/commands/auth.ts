// login, logout, whoami, register: the only commands that see a password, and they only
// pass it on to berth. Tokens are never printed.
import { unwrap } from '@berth/client';
import type { Command } from 'commander';
import { withSessionsLock } from '../config/sessions.js';
import { Context } from '../context.js';
import { withExamples } from '../help.js';
import { askSecret, askText } from '../input/secrets.js';
import { formatFields } from '../output/table.js';

export function registerAuthCommands(program: Command): void {
  withExamples(
    program
      .command('login')
      .argument('[username]', 'your berth username (asked for on a terminal when omitted)')
      .description('log in: the password is asked for without echo, or read from standard input')
      .action(async (username: string | undefined, _opts, command: Command) => {
        const ctx = Context.of(command);
        const { url, anonymous, store } = ctx.connect();
        const name = await askText('username', username, 'berth login USERNAME');
        const password = await askSecret('password');
        const tokens = unwrap(await anonymous.api.POST('/v1/token', { body: { username: name, password } }));
        const previous = await withSessionsLock(async () => {
          const before = store.read();
          store.save({ username: name, refresh_token: tokens.refresh_token, session_id: tokens.session_id });
          return before;
        });
        // The session this login replaces is ended, not left to idle out on the server.
        if (previous && previous.session_id !== tokens.session_id) {
          await anonymous.api.POST('/v1/logout', { body: { refresh_token: previous.refresh_token } }).catch(() => undefined);
        }
        ctx.print({ server: url, username: name, session_id: tokens.session_id }, () => `logged in to ${url} as ${name}`);
      }),
    'berth login alice                       # asks for the password',
    "printf '%s\\n' \"$PASSWORD\" | berth login alice   # in a script",
    'berth --url https://berth.example.com login alice',
  );

  withExamples(
    program
      .command('logout')
      .description('end the session on the server and forget it here')
      .action(async (_opts, command: Command) => {
        const ctx = Context.of(command);
        const { url, anonymous, store } = ctx.connect();
        const ended = await withSessionsLock(async () => {
          const stored = store.read();
          if (!stored) return false;
          const result = await anonymous.api.POST('/v1/logout', { body: { refresh_token: stored.refresh_token } });
          // 401: the session had ended already; either way nothing is left to keep.
          if (result.response.status !== 401) unwrap(result);
          store.remove();
          return true;
        });
        ctx.print({ server: url, logged_out: ended }, () => (ended ? `logged out of ${url}` : `not logged in to ${url}`));
      }),
    'berth logout',
  );

  withExamples(
    program
      .command('whoami')
      .description('who you are logged in as, on which server')
      .action(async (_opts, command: Command) => {
        const ctx = Context.of(command);
        const me = unwrap(await ctx.api.GET('/v1/whoami'));
        ctx.print(me, () =>
          formatFields([
            ['username', me.username],
            ['role', me.role],
            ['email', me.email],
            ['server', ctx.connect().url],
            ['session', me.session_id],
          ]),
        );
      }),
    'berth whoami',
    'berth whoami --json | jq -r .role',
  );

  withExamples(
    program
      .command('register')
      .argument('[username]', 'the username you want (asked for on a terminal when omitted)')
      .option('--email <address>', 'your email address')
      .description('create your account, where the server lets anyone register')
      .action(async (username: string | undefined, opts: { email?: string }, command: Command) => {
        const ctx = Context.of(command);
        const { url, anonymous } = ctx.connect();
        const name = await askText('username', username, 'berth register USERNAME');
        const password = await askSecret('new password', { confirm: true });
        const user = unwrap(await anonymous.api.POST('/v1/register', { body: { username: name, password, ...(opts.email && { email: opts.email }) } }));
        ctx.print(user, () => `registered ${user.username} at ${url}; now run: berth login ${user.username}`);
      }),
    'berth register alice --email alice@example.com',
  );
}
