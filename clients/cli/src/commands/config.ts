// berth config: the server URL and CA kept in the config file, and where things are.
import path from 'node:path';
import { Argument, type Command } from 'commander';
import { configFile, sessionsFile } from '../config/paths.js';
import { sessionStore } from '../config/sessions.js';
import { CONFIG_KEYS, normaliseUrl, readCaFile, readConfig, resolveSettings, writeConfig, type ConfigKey } from '../config/settings.js';
import { Context } from '../context.js';
import { CliError } from '../errors.js';
import { withExamples } from '../help.js';
import { formatFields } from '../output/table.js';

const keyArgument = () => new Argument('<key>', 'the setting').choices(CONFIG_KEYS);

export function registerConfigCommands(program: Command): void {
  const config = withExamples(
    program.command('config').description('the server URL and CA berth uses, kept in the config file'),
    'berth config                            # the same as berth config show',
    'berth config set url https://berth.example.com',
  );

  withExamples(
    config
      .command('show', { isDefault: true })
      .description('the settings in force and where berth keeps its files')
      .action((_opts, command: Command) => {
        const ctx = Context.of(command);
        let resolved: { url?: string; caFile?: string } = {};
        try {
          resolved = resolveSettings(ctx.options);
        } catch (err) {
          // No server yet is a normal state to show, not a failure.
          if (!(err instanceof CliError)) throw err;
        }
        const loggedInAs = resolved.url ? sessionStore(resolved.url).read()?.username : undefined;
        const shown = {
          url: resolved.url ?? null,
          ca: resolved.caFile ?? null,
          logged_in_as: loggedInAs ?? null,
          config_file: configFile(),
          sessions_file: sessionsFile(),
          stored: readConfig(),
        };
        ctx.print(shown, () =>
          formatFields([
            ['url', shown.url ?? '(none: give --url, set BERTH_URL or run berth config set url …)'],
            ['ca', shown.ca ?? '(the usual roots only)'],
            ['logged in as', shown.logged_in_as ?? '(nobody)'],
            ['config file', shown.config_file],
            ['sessions file', shown.sessions_file],
          ]),
        );
      }),
    'berth config',
    'berth config show --json',
    'BERTH_URL=https://staging.example.com berth config',
  );

  withExamples(
    config
      .command('set')
      .addArgument(keyArgument())
      .argument('<value>', 'the value: a URL for url, a PEM file for ca')
      .description('write a setting into the config file')
      .action((key: ConfigKey, value: string, _opts, command: Command) => {
        const ctx = Context.of(command);
        const stored = readConfig();
        if (key === 'url') stored.url = normaliseUrl(value);
        else {
          const file = path.resolve(value);
          readCaFile(file);
          stored.ca = file;
        }
        writeConfig(stored);
        ctx.print(stored, () => `${key} = ${stored[key]}  (${configFile()})`);
      }),
    'berth config set url https://berth.example.com',
    'berth config set ca ~/.local/share/caddy/pki/authorities/local/root.crt',
  );

  withExamples(
    config
      .command('unset')
      .addArgument(keyArgument())
      .description('remove a setting from the config file')
      .action((key: ConfigKey, _opts, command: Command) => {
        const ctx = Context.of(command);
        const stored = readConfig();
        delete stored[key];
        writeConfig(stored);
        ctx.print(stored, () => `${key} removed  (${configFile()})`);
      }),
    'berth config unset ca',
  );
}
