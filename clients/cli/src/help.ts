// Help text shared by the commands: examples under each, and what the top-level help adds.
import type { Command } from 'commander';
import { EXIT_CODES_HELP } from './errors.js';

/** Adds an "Examples:" section after a command's help. */
export function withExamples<C extends Command>(command: C, ...lines: string[]): C {
  return command.addHelpText('after', `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

const CONFIGURATION_HELP = `Configuration (a flag wins over the environment, which wins over the file):
  --url URL, BERTH_URL, or "url" in $XDG_CONFIG_HOME/berth/config.json (~/.config/berth/config.json)
      the berth server, e.g. https://berth.example.com (http:// only for this machine)
  --ca FILE, BERTH_CA, or "ca" in the config file
      a CA certificate (PEM) to trust besides the usual ones, e.g. a local Caddy's root;
      TLS is always verified
  berth config set url https://berth.example.com   writes the config file
  The session (a refresh token, never the password) is kept per server in
  $XDG_STATE_HOME/berth/sessions.json (~/.local/state/berth/sessions.json), mode 0600.`;

export const TOP_LEVEL_HELP = `
A first session:
  berth config set url https://berth.example.com
  berth login alice
  berth reserve --count 2 --for 1h
  berth ssh 3f1e6a4b
  berth release 3f1e6a4b

Every command takes --help, and every one but ssh --json (machine-readable output on stdout).
Errors are one line on stderr: the problem's code and detail.

${CONFIGURATION_HELP}

${EXIT_CODES_HELP}`;
