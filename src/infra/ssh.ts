// SSH to pool machines through ssh2, with the host key pinned: berth compares the
// server's key with the fingerprint it recorded and refuses to talk to anything else.
// Secrets (passwords, keys) travel on stdin, never on a command line. What a machine
// sends back is bounded: a machine's root cannot make berth buffer without end.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type ssh2Types from 'ssh2';
import { BoundedOutput } from './bounded-output.js';

const require = createRequire(import.meta.url);
let ssh2Module: typeof ssh2Types | undefined;
/**
 * ssh2, loaded on the first SSH use rather than at start-up: its crypto holds a 16 MiB
 * emscripten heap for poly1305 (mostly untouched: ~1.4 MB resident once loaded, measured),
 * and a berth that only answers reads never needs it.
 */
const ssh2 = () => (ssh2Module ??= require('ssh2') as typeof ssh2Types);

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  password?: string;
  privateKey?: string;
  /** SHA256:… of the expected host key; null = accept and report whatever the server shows. */
  hostKeyFingerprint: string | null;
}

export class HostKeyMismatchError extends Error {
  override name = 'HostKeyMismatchError';
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`host key changed: pinned ${expected}, server showed ${actual}`);
  }
}

export class SshError extends Error {
  override name = 'SshError';
}

/** OpenSSH's fingerprint of a host key blob: "SHA256:" + unpadded base64 of its SHA-256. */
export function fingerprintOfKeyBlob(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The OpenSSH public key line of a key blob ("ssh-ed25519 AAAA…"), from the type the blob names. */
export function keyLineOfBlob(blob: Buffer): string {
  const typeLength = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  return `${blob.subarray(4, 4 + typeLength).toString()} ${blob.toString('base64')}`;
}

/** An OpenSSH public key line, checked and without its comment: "type base64"; null when garbled. */
export function normalizeKeyLine(value: string): string | null {
  const m = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|ssh-dss)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$/.exec(value.trim());
  if (!m) return null;
  const blob = Buffer.from(m[2]!, 'base64');
  // The blob starts with its own key type; a mismatch means the line was garbled.
  const line = keyLineOfBlob(blob);
  return line.startsWith(`${m[1]} `) ? line : null;
}

/** Accepts an OpenSSH public key line ("ssh-ed25519 AAAA… comment") or a "SHA256:…" fingerprint. */
export function parseHostKey(value: string): string | null {
  const v = value.trim();
  if (/^SHA256:[A-Za-z0-9+/]{43}$/.test(v)) return v;
  const line = normalizeKeyLine(v);
  return line ? fingerprintOfKeyBlob(Buffer.from(line.split(' ')[1]!, 'base64')) : null;
}

/** Length of an ssh-ed25519 public key blob: "ssh-ed25519" and 32 bytes of key, each length-prefixed. */
const ED25519_BLOB_LENGTH = 4 + 11 + 4 + 32;

/**
 * A new Ed25519 key pair in OpenSSH formats. ssh2's generator drops a leading zero byte
 * of the public key about once in 256 keys (mscdex/ssh2#1390); OpenSSH refuses such a
 * key (sshd will not start with it as a host key, nor accept it for a login), so a pair
 * that does not check out is thrown away and made again.
 */
export function generateSshKeyPair(comment?: string): { private: string; public: string } {
  for (;;) {
    const pair = ssh2().utils.generateKeyPairSync('ed25519', comment ? { comment } : undefined);
    const blob = Buffer.from(pair.public.split(' ')[1] ?? '', 'base64');
    const parsed = ssh2().utils.parseKey(pair.private);
    const own = parsed instanceof Error || Array.isArray(parsed) ? null : parsed.getPublicSSH();
    if (blob.length === ED25519_BLOB_LENGTH && own?.equals(blob)) return { private: pair.private, public: pair.public.trim() };
  }
}

/** The OpenSSH public key line of an (unencrypted) private key; null when it does not parse. */
export function publicKeyLineOf(privateKey: string): string | null {
  const parsed = ssh2().utils.parseKey(privateKey);
  return parsed instanceof Error || Array.isArray(parsed) ? null : keyLineOfBlob(parsed.getPublicSSH());
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface SshSession {
  /** The fingerprint the server presented (equal to the pinned one when there was one). */
  fingerprint: string;
  /** The host key it presented, as an OpenSSH public key line. */
  hostKey: string;
  /**
   * Runs a fixed script with bash, as root (through `sudo -n` when logged in as another
   * user). Fails with SshError when the connection breaks, the command outlives the
   * command timeout, or it prints more than COMMAND_OUTPUT_MAX_BYTES.
   */
  runScript(
    script: string,
    args: string[],
    opts?: { stdin?: string; /** `$0` of the script: lets another script find this one with pkill -f. */ name?: string },
  ): Promise<CommandResult>;
  close(): void;
}

const SAFE_ARG = /^[A-Za-z0-9_.:@=+-]*$/;
/**
 * The most a command may print (stdout and stderr together). berth's own scripts print a
 * few lines; a machine's root (a tenant with sudo, say) can make every command print
 * without end, for instance from ~/.ssh/rc, and must not make berth buffer it.
 */
export const COMMAND_OUTPUT_MAX_BYTES = 1024 * 1024;

/**
 * Connects `client` to `target` until `until` (`ready`: logged in; `handshake`: the key
 * exchange done, in which the server signed with its host key), checking the presented host
 * key against the pin (none: any key). Answers the key presented; on failure the client is
 * ended and the error is HostKeyMismatchError for another key, else SshError saying `what`.
 */
async function openClient(
  client: ssh2Types.Client,
  target: SshTarget,
  until: 'ready' | 'handshake',
  timeoutMs: number,
  what: string,
): Promise<Buffer> {
  let presented: Buffer | undefined;
  const matches = (key: Buffer) => target.hostKeyFingerprint === null || fingerprintOfKeyBlob(key) === target.hostKeyFingerprint;
  try {
    await new Promise<void>((resolve, reject) => {
      if (until === 'ready') client.once('ready', () => resolve());
      else client.once('handshake', () => resolve());
      client.once('error', reject);
      client.once('close', () => reject(new Error(`the connection closed during the ${until === 'ready' ? 'handshake' : 'key exchange'}`)));
      client.connect({
        host: target.host,
        port: target.port,
        username: target.username,
        password: target.password,
        privateKey: target.privateKey,
        readyTimeout: timeoutMs,
        tryKeyboard: false,
        hostVerifier: (key: Buffer) => {
          presented = key;
          return matches(key);
        },
      });
    });
    return presented!;
  } catch (err) {
    client.end();
    if (presented && !matches(presented)) throw new HostKeyMismatchError(target.hostKeyFingerprint!, fingerprintOfKeyBlob(presented));
    throw new SshError(`${what} ${target.host}:${target.port}: ${(err as Error).message}`);
  }
}

export async function sshConnect(target: SshTarget, timeouts: { connectTimeoutMs: number; commandTimeoutMs: number }): Promise<SshSession> {
  const client = new (ssh2().Client)();
  // Every error of the connection, now or later (the machine dies, a VM is reset, a late
  // RST after close), lands here: an ssh2 client with no error listener would take the
  // whole process down. A command in flight fails on its own (channel close, timeout).
  let connectionError: Error | undefined;
  client.on('error', (err: Error) => {
    connectionError = err;
  });
  const presentedKey = await openClient(client, target, 'ready', timeouts.connectTimeoutMs, 'cannot connect to');
  const asRoot = target.username === 'root' ? '' : 'sudo -n ';
  return {
    fingerprint: fingerprintOfKeyBlob(presentedKey),
    hostKey: keyLineOfBlob(presentedKey),
    async runScript(script, args, opts = {}) {
      const name = opts.name ?? 'berth';
      for (const a of [name, ...args]) if (!SAFE_ARG.test(a)) throw new SshError(`refusing unsafe argument ${JSON.stringify(a)}`);
      // The script is berth's own constant text; arguments are validated above; secrets come on stdin.
      const command = `${asRoot}bash -c ${shellQuote(script)} ${shellQuote(name)} ${args.map(shellQuote).join(' ')}`;
      return exec(client, command, opts.stdin ?? '', timeouts.commandTimeoutMs, () => connectionError);
    },
    close: () => client.end(),
  };
}

/**
 * Whether the server at `target` proves it holds the pinned host key: one key exchange, in
 * which the server signs the exchange with its host key and ssh2 checks that signature and
 * the key against the pin; no login. Resolves once proven; throws HostKeyMismatchError when
 * another key answers, SshError when nothing does.
 */
export async function sshProveHostKey(target: { host: string; port: number; hostKeyFingerprint: string }, timeoutMs: number): Promise<void> {
  const client = new (ssh2().Client)();
  // Late errors (a reset after the end) must not go unheard: see sshConnect.
  client.on('error', () => {});
  // ssh2 wants a user; no authentication is ever attempted (the connection ends at the handshake).
  await openClient(client, { ...target, username: 'berth' }, 'handshake', timeoutMs, 'no SSH key exchange with');
  client.end();
}

/** One command on an open connection, its output bounded, every stream error caught. */
function exec(client: ssh2Types.Client, command: string, stdin: string, timeoutMs: number, connectionError: () => Error | undefined): Promise<CommandResult> {
  const half = COMMAND_OUTPUT_MAX_BYTES / 2;
  const stdout = new BoundedOutput({ head: half, tail: half });
  const stderr = new BoundedOutput({ head: half, tail: half });
  return new Promise<CommandResult>((resolve, reject) => {
    let channel: ssh2Types.ClientChannel | undefined;
    let settled = false;
    const settle = (outcome: { result?: CommandResult; error?: Error }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (outcome.error) {
        // Stop the command and its output; the channel may already be gone.
        try {
          channel?.close();
        } catch {}
        reject(outcome.error);
      } else resolve(outcome.result!);
    };
    const timer = setTimeout(() => settle({ error: new SshError(`command timed out after ${timeoutMs} ms`) }), timeoutMs);
    const onOutput = (into: BoundedOutput) => (chunk: Buffer) => {
      into.push(chunk);
      if (stdout.total + stderr.total > COMMAND_OUTPUT_MAX_BYTES) {
        settle({
          error: new SshError(
            `the command printed more than ${COMMAND_OUTPUT_MAX_BYTES} bytes (is something on the machine printing at every login?): ${stdout.excerpt(100)} ${stderr.excerpt(100)}`.trim(),
          ),
        });
      }
    };
    try {
      client.exec(command, (err, ch) => {
        if (err) return settle({ error: new SshError(`could not run a command: ${err.message}`) });
        channel = ch;
        let exit: { code: number | null; signal?: string } | undefined;
        ch.on('data', onOutput(stdout));
        ch.stderr.on('data', onOutput(stderr));
        ch.on('error', (e: Error) => settle({ error: new SshError(`the command's channel failed: ${e.message}`) }));
        ch.stderr.on('error', (e: Error) => settle({ error: new SshError(`the command's channel failed: ${e.message}`) }));
        ch.on('exit', (code: number | null, signal?: string) => (exit = { code, signal }));
        ch.on('close', () => {
          // No exit status: the connection ended before the command did.
          if (!exit || (exit.code === null && !exit.signal)) {
            const broken = connectionError();
            return settle({ error: new SshError(broken ? `the connection failed: ${broken.message}` : 'the connection closed before the command finished') });
          }
          // Trimmed, as callers compare whole lines.
          settle({ result: { code: exit.code, stdout: stdout.toString().trim(), stderr: stderr.toString().trim() } });
        });
        ch.end(stdin);
      });
    } catch (err) {
      settle({ error: new SshError(`could not run a command: ${(err as Error).message}`) });
    }
  });
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
