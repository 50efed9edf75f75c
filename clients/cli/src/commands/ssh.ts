// berth ssh: OpenSSH to a reserved machine, as the reservation's account, checking the
// machine's host key against the one berth pinned.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unwrap } from '@berth/client';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { withExamples } from '../help.js';
import { collect } from '../input/values.js';
import { passwordNotice } from '../output/reservations.js';
import { resolveReservationId } from '../resolve.js';
import { handInterruptsToChild } from '../signals.js';
import { checkedEndpoint } from '../ssh/destination.js';
import { knownHostsFromAnswer, knownHostsFromScan } from '../ssh/known-hosts.js';

interface SshOptions {
  identity?: string;
  config?: string;
  option?: string[];
}

/** The remote command: everything after the first `--` of the command line. */
function remoteCommand(command: Command): string[] {
  let root = command;
  while (root.parent) root = root.parent;
  const raw = (root as unknown as { rawArgs: string[] }).rawArgs;
  const at = raw.indexOf('--');
  return at === -1 ? [] : raw.slice(at + 1);
}

function runSsh(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: 'inherit' });
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new CliError('ssh was not found: install OpenSSH (Debian: apt-get install openssh-client)') : err),
    );
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
}

export function registerSshCommand(program: Command): void {
  withExamples(
    program
      .command('ssh')
      .argument('<id>', 'the reservation (its first characters are enough)')
      .argument('[machine]', 'which of its machines (default: the first)')
      .argument('[command...]', 'after --: a command to run instead of a login shell')
      .option('-i, --identity <file>', 'the private key to log in with (ssh -i)')
      .option('-F, --config <file>', 'an ssh config file instead of ~/.ssh/config (ssh -F)')
      .option('-o, --option <option>', 'an ssh option, e.g. -o ForwardAgent=yes (repeat for several)', collect)
      .summary("log in to a reserved machine with OpenSSH, checking berth's pinned host key")
      .description(
        "log in to a reserved machine with OpenSSH, as the reservation's account. The host key must be the one berth " +
          'pinned (StrictHostKeyChecking=yes, a temporary known_hosts): no trust-on-first-use prompt. Exits with ssh\'s status.',
      )
      .action(async (id: string, machineOperand: string | undefined, operands: string[], opts: SshOptions, command: Command) => {
        const ctx = Context.of(command);
        // Commander drops the `--`: the operands it stood before are the reservation and the machine.
        const remote = remoteCommand(command);
        const all = [id, ...(machineOperand === undefined ? [] : [machineOperand]), ...operands];
        const local = all.slice(0, all.length - remote.length);
        if (local.length === 0) throw usageError('give the reservation id before --');
        if (local.length > 2) throw usageError(`unexpected ${local.slice(2).join(' ')}: put the remote command after --`);
        const machineName = local[1];

        const reservation = unwrap(await ctx.api.GET('/v1/reservations/{id}', { params: { path: { id: await resolveReservationId(ctx, local[0]!) } } }));
        if (reservation.status !== 'active') throw new CliError(`reservation ${reservation.id} is ${reservation.status}`, EXIT.refused);
        // The first read after a queued or booked reservation started reveals its generated password, once: ssh may ask for it.
        const password = passwordNotice(reservation);
        if (password) ctx.note(password);
        const named = machineName ? reservation.machines.find((m) => m.name === machineName) : reservation.machines[0];
        if (!named) {
          throw usageError(`${machineName} is not in reservation ${reservation.id}: its machines are ${reservation.machines.map((m) => m.name).join(', ')}`);
        }
        const machine = checkedEndpoint(named);
        if (!machineName && reservation.machines.length > 1 && process.stderr.isTTY) {
          ctx.note(`connecting to ${machine.name} (of ${reservation.machines.map((m) => m.name).join(', ')}; name one to choose)`);
        }
        const knownHosts =
          knownHostsFromAnswer(reservation, machine) ??
          (await knownHostsFromScan(
            machine,
            unwrap(await ctx.api.GET('/v1/machines/{name}', { params: { path: { name: machine.name } } })).host_key_fingerprint,
          ));
        await ctx.close(); // nothing more to ask berth while ssh runs

        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ssh-'));
        const knownHostsFile = path.join(dir, 'known_hosts');
        fs.writeFileSync(knownHostsFile, knownHosts, { mode: 0o600 });
        const args = [
          ...(opts.config ? ['-F', opts.config] : []),
          ...(opts.identity ? ['-i', opts.identity, '-o', 'IdentitiesOnly=yes'] : []),
          ...(opts.option ?? []).flatMap((o) => ['-o', o]),
          '-o', 'StrictHostKeyChecking=yes',
          '-o', `UserKnownHostsFile=${knownHostsFile}`,
          '-o', 'GlobalKnownHostsFile=/dev/null',
          '-o', 'UpdateHostKeys=no',
          '-o', 'CheckHostIP=no',
          '-p', String(machine.port),
          '-l', reservation.account.username,
          // Options end here: the host (checked above) and the remote command are never read as options.
          '--',
          machine.host,
          ...remote,
        ];
        handInterruptsToChild();
        try {
          process.exitCode = await runSsh(args);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
    'berth ssh 3f1e6a4b                    # a shell on the first machine',
    'berth ssh 3f1e6a4b node-2',
    'berth ssh 3f1e6a4b node-2 -- uname -a',
    'berth ssh -i ~/.ssh/id_ed25519 3f1e6a4b -- sudo reboot',
  );
}
