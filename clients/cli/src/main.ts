// Entry point of `berth`: runs one command and leaves with an exit code that says what
// kind of failure it was (see EXIT in errors.ts, and `berth --help`).
import { CommanderError } from 'commander';
import { Context } from './context.js';
import { EXIT, toCliError } from './errors.js';
import { buildProgram } from './program.js';
import { exitOnInterrupt } from './signals.js';

exitOnInterrupt();

async function main(): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander printed the message (or the help) already.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const failure = toCliError(err, Context.current?.serverUrl);
    process.stderr.write(`berth: ${failure.message}\n`);
    return failure.exitCode;
  } finally {
    await Context.current?.close().catch(() => {});
  }
}

process.exitCode = await main();
