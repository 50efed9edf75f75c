// The public key `berth reserve` installs in the reservation's account: the one named with
// --key, or else the one OpenSSH would log in with anyway (~/.ssh/id_ed25519.pub, or the
// first key the ssh-agent holds), so that `berth ssh` then works without a password.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { usageError } from '../errors.js';

export interface PublicKey {
  /** One OpenSSH public key line. */
  line: string;
  /** Where it came from, for the person: a file, or the agent. */
  source: string;
}

const PUBLIC_KEY_LINE = /^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+/;

const expandHome = (file: string) => (file === '~' || file.startsWith('~/') ? os.homedir() + file.slice(1) : file);

/** The public key in a file; a private key given by mistake is refused, never sent. */
export function readPublicKey(file: string): PublicKey {
  let text: string;
  try {
    text = fs.readFileSync(expandHome(file), 'utf8').trim();
  } catch (err) {
    throw usageError(`cannot read the key ${file}: ${(err as Error).message}`);
  }
  if (text.includes('PRIVATE KEY')) throw usageError(`${file} is a private key: give the public one (${file}.pub)`);
  if (!PUBLIC_KEY_LINE.test(text)) throw usageError(`${file} holds no OpenSSH public key`);
  return { line: text, source: file };
}

/** The agent's first key (`ssh-add -L`), or null: no agent, an empty one, or no ssh-add at all. */
function firstAgentKey(): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('ssh-add', ['-L'], { timeout: 5_000, encoding: 'utf8' }, (err, stdout) => {
      if (err) return resolve(null); // exit 1: no identities; exit 2: no agent; ENOENT: no OpenSSH
      resolve(stdout.split('\n').find((line) => PUBLIC_KEY_LINE.test(line))?.trim() ?? null);
    });
  });
}

/** ~/.ssh/id_ed25519.pub, else the ssh-agent's first key, else null (berth then generates a password). */
export async function defaultPublicKey(): Promise<PublicKey | null> {
  const file = path.join(os.homedir(), '.ssh', 'id_ed25519.pub');
  if (fs.existsSync(file)) {
    try {
      return readPublicKey(file);
    } catch (err) {
      throw usageError(`${(err as Error).message} (name another with --key FILE, or send none with --no-key)`);
    }
  }
  const line = await firstAgentKey();
  if (!line) return null;
  const comment = line.split(' ').slice(2).join(' ');
  return { line, source: `the ssh-agent's first key${comment ? ` (${comment})` : ''}` };
}
