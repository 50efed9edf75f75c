// The `berth` command line: global options, and every command group.
import fs from 'node:fs';
import { Command, Option } from 'commander';
import { registerAuthCommands } from './commands/auth.js';
import { registerConfigCommands } from './commands/config.js';
import { registerImageCommands } from './commands/images.js';
import { registerMachineCommands } from './commands/machines.js';
import { registerPoolCommands } from './commands/pool.js';
import { registerReservationCommands } from './commands/reservations.js';
import { registerReserveCommand } from './commands/reserve.js';
import { registerSshCommand } from './commands/ssh.js';
import { registerUserCommands } from './commands/users.js';
import { registerVmCommands } from './commands/vms.js';
import { TOP_LEVEL_HELP } from './help.js';

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('berth')
    .description('Reserve machines and VMs from a berth server, log in to them, and run the pool.')
    .version(version(), '-V, --version')
    .addOption(new Option('--url <url>', 'the berth server (else BERTH_URL, else the config file)'))
    .addOption(new Option('--ca <file>', 'a CA certificate (PEM) to trust, e.g. a local Caddy root (else BERTH_CA, else the config file)'))
    .option('--json', 'print machine-readable JSON on stdout')
    // Inherited by every command added below: usage errors throw (exit code 2), help shows the global options.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`berth: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .addHelpText('after', TOP_LEVEL_HELP);

  registerAuthCommands(program);
  registerConfigCommands(program);
  registerMachineCommands(program);
  registerPoolCommands(program);
  registerReserveCommand(program);
  registerReservationCommands(program);
  registerSshCommand(program);
  registerUserCommands(program);
  registerImageCommands(program);
  registerVmCommands(program);
  return program;
}
