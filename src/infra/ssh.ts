// SSH to pool machines through node-ssh, with the host key pinned: berth compares the
// server's key with the fingerprint it recorded and refuses to talk to anything else.
// Secrets (passwords, keys) travel on stdin, never on a command line.
import { createHash } from 'node:crypto';
import { NodeSSH } from 'node-ssh';
import ssh2 from 'ssh2';

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

/** Accepts an OpenSSH public key line ("ssh-ed25519 AAAA… comment") or a "SHA256:…" fingerprint. */
export function parseHostKey(value: string): string | null {
  const v = value.trim();
  if (/^SHA256:[A-Za-z0-9+/]{43}$/.test(v)) return v;
  const m = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|ssh-dss)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$/.exec(v);
  if (!m) return null;
  const blob = Buffer.from(m[2]!, 'base64');
  // The blob starts with its own key type; a mismatch means the line was garbled.
  const typeLength = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  if (blob.subarray(4, 4 + typeLength).toString() !== m[1]) return null;
  return fingerprintOfKeyBlob(blob);
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
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment ? { comment } : undefined);
    const blob = Buffer.from(pair.public.split(' ')[1] ?? '', 'base64');
    const parsed = ssh2.utils.parseKey(pair.private);
    const own = parsed instanceof Error || Array.isArray(parsed) ? null : parsed.getPublicSSH();
    if (blob.length === ED25519_BLOB_LENGTH && own?.equals(blob)) return { private: pair.private, public: pair.public.trim() };
  }
}

export interface SshSession {
  /** The fingerprint the server presented (equal to the pinned one when there was one). */
  fingerprint: string;
  /** Runs a fixed script with bash, as root (through `sudo -n` when logged in as another user). */
  runScript(
    script: string,
    args: string[],
    opts?: { stdin?: string; /** `$0` of the script: lets another script find this one with pkill -f. */ name?: string },
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
  close(): void;
}

const SAFE_ARG = /^[A-Za-z0-9_.:@=+-]*$/;

export async function sshConnect(target: SshTarget, timeouts: { connectTimeoutMs: number; commandTimeoutMs: number }): Promise<SshSession> {
  const ssh = new NodeSSH();
  let presented: string | undefined;
  try {
    await ssh.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      password: target.password,
      privateKey: target.privateKey,
      readyTimeout: timeouts.connectTimeoutMs,
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        presented = fingerprintOfKeyBlob(key);
        return target.hostKeyFingerprint === null || presented === target.hostKeyFingerprint;
      },
    } as Parameters<NodeSSH['connect']>[0]);
  } catch (err) {
    ssh.dispose();
    if (presented && target.hostKeyFingerprint && presented !== target.hostKeyFingerprint) {
      throw new HostKeyMismatchError(target.hostKeyFingerprint, presented);
    }
    throw new SshError(`cannot connect to ${target.host}:${target.port}: ${(err as Error).message}`);
  }
  // node-ssh drops its error listener once connected; an ssh2 client that later meets a
  // socket error (the machine dies, a VM is reset, a late RST after close) with no
  // listener would take the whole process down. The command in flight fails on its own
  // (channel close, or our timeout); the error itself is only kept for the message.
  const client = ssh.connection!;
  let connectionError: Error | undefined;
  client.on('error', (err: Error) => {
    connectionError = err;
  });
  const asRoot = target.username === 'root' ? '' : 'sudo -n ';
  return {
    fingerprint: presented!,
    async runScript(script, args, opts = {}) {
      const name = opts.name ?? 'berth';
      for (const a of [name, ...args]) if (!SAFE_ARG.test(a)) throw new SshError(`refusing unsafe argument ${JSON.stringify(a)}`);
      // The script is berth's own constant text; arguments are validated above; secrets come on stdin.
      const command = `${asRoot}bash -c ${shellQuote(script)} ${shellQuote(name)} ${args.map(shellQuote).join(' ')}`;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new SshError(`command timed out after ${timeouts.commandTimeoutMs} ms`)), timeouts.commandTimeoutMs);
      });
      try {
        const r = await Promise.race([ssh.execCommand(command, { stdin: opts.stdin ?? '' }), timeout]);
        // No exit code and no signal: the connection ended before the command did.
        if (r.code === null && !r.signal) {
          throw new SshError(connectionError ? `the connection failed: ${connectionError.message}` : 'the connection closed before the command finished');
        }
        return { code: r.code, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        if (connectionError && !(err instanceof SshError)) throw new SshError(`the connection failed: ${connectionError.message}`);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => ssh.dispose(),
  };
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
