// The command line never prints a credential it holds. A watched user's every command has
// its stdout and stderr checked for: the secrets the test gave it (its password, a
// machine's root password or key), the refresh token of its session as stored before and
// after the command (it rotates), and anything shaped like a berth token: a JWT (the
// access token lives only in the CLI's memory, so its shape is all a test can know) or a
// `brt_` refresh token. A reservation password berth generated and shows once is no
// credential the user held before: it is not on the list.
import fs from 'node:fs';
import { expect } from 'vitest';
import type { CliUser } from './cli.js';

const TOKEN_SHAPES: [string, RegExp][] = [
  ['an access token (JWT)', /eyJ[\w-]+\.eyJ[\w-]+/],
  ['a refresh token', /\bbrt_[\w-]{8,}/],
];

/** The refresh tokens the sessions file holds now (none when logged out). */
function storedRefreshTokens(user: CliUser): string[] {
  if (!fs.existsSync(user.sessionsFile)) return [];
  const { servers } = JSON.parse(fs.readFileSync(user.sessionsFile, 'utf8')) as { servers: Record<string, { refresh_token?: string }> };
  return Object.values(servers).flatMap((s) => (s.refresh_token ? [s.refresh_token] : []));
}

/** Checks every command `user` runs from now on (ok and json too) for the secrets it holds; `secrets` maps a label (named in a failure) to each. */
export function watchedForSecrets(user: CliUser, secrets: Record<string, string>): CliUser {
  const held = Object.entries(secrets);
  const unwatchedRun = user.run;
  user.run = async (args, options) => {
    const before = storedRefreshTokens(user);
    const result = await unwatchedRun(args, options);
    const tokens = [...before, ...storedRefreshTokens(user)].map((t): [string, string] => ['the session’s refresh token', t]);
    for (const [stream, text] of [['stdout', result.stdout], ['stderr', result.stderr]] as const) {
      const where = `berth ${args.join(' ')} (${stream})`;
      for (const [label, secret] of [...held, ...tokens]) expect(text.includes(secret), `${where} printed ${label}`).toBe(false);
      for (const [label, shape] of TOKEN_SHAPES) expect(shape.test(text), `${where} printed ${label}`).toBe(false);
    }
    return result;
  };
  return user;
}
