// Passwords come from a prompt that does not echo (on a terminal) or from standard input
// (in a script: `printf '%s' "$PASS" | berth login alice`); never from the command line,
// where other users of the machine could read them in the process list.
import { read } from 'read';
import { CliError, EXIT, usageError } from '../errors.js';

const stdinIsTerminal = () => Boolean(process.stdin.isTTY);

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw usageError('standard input is too long for a password');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The first line of standard input, without its line ending. */
async function secretFromStdin(what: string): Promise<string> {
  const text = (await readAllStdin()).split(/\r?\n/)[0] ?? '';
  if (!text) throw usageError(`no ${what} on standard input`);
  return text;
}

async function prompt(text: string, silent: boolean): Promise<string> {
  try {
    // Prompts go to stderr: stdout stays the command's output.
    const answer = await read({ prompt: text, silent, replace: '', output: process.stderr });
    // The Enter that ended a silent answer was not echoed either: end the prompt's line.
    if (silent) process.stderr.write('\n');
    return answer;
  } catch (err) {
    if ((err as Error).message === 'canceled') throw new CliError('canceled', EXIT.interrupted);
    throw err;
  }
}

/** Asks on the terminal; `confirm` asks twice and insists the two agree (new passwords). */
export async function askSecret(what: string, { confirm = false } = {}): Promise<string> {
  if (!stdinIsTerminal()) return secretFromStdin(what);
  const first = await prompt(`${what}: `, true);
  if (!first) throw usageError(`no ${what} given`);
  if (confirm && (await prompt(`${what} (again): `, true)) !== first) throw usageError(`the two ${what}s differ`);
  return first;
}

/** A visible answer on the terminal (a username); required when not on one. */
export async function askText(what: string, given: string | undefined, flagHint: string): Promise<string> {
  if (given) return given;
  if (!stdinIsTerminal()) throw usageError(`give the ${what} (${flagHint}): standard input is not a terminal`);
  const answer = (await prompt(`${what}: `, false)).trim();
  if (!answer) throw usageError(`no ${what} given`);
  return answer;
}
