// The access-token signing keys: Ed25519 key pairs stored as PKCS#8 PEM files named
// `<kid>.pem` in one directory. The newest key signs; every key present verifies, so a
// rotation never invalidates tokens already issued. Rotating writes a new key and prunes
// keys that were retired long enough ago that no unexpired token can name them.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type JsonWebKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const SIGNING_ALGORITHM = 'EdDSA';
const KEY_FILE = /^(\d{8}T\d{9}Z-[0-9a-f]{8})\.pem$/;
/** Unknown kids trigger a re-read of the directory at most this often. */
const RELOAD_BACKOFF_MS = 1000;
/**
 * A running process looks for a newer signing key at most this often, so a rotation made
 * by the CLI or another process takes effect everywhere within this time (and a retired
 * key is known to have stopped signing once its successor is older than this).
 */
export const SIGNING_RESCAN_MS = 10_000;

export interface SigningKey {
  kid: string;
  privatePem: string;
  publicPem: string;
  jwk: JsonWebKey & { kid: string; alg: string; use: string };
}

/**
 * A kid is its creation time to the millisecond plus a random suffix, so sorting kids
 * sorts keys by age. `after` (the newest existing kid) keeps the order strict even when
 * two keys are made within one millisecond.
 */
function newKid(after: string | undefined): string {
  const ms = Math.max(Date.now(), after ? createdAt(after) + 1 : 0);
  const stamp = new Date(ms).toISOString().replace(/[-:.]/g, ''); // 20261121T093000123Z
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}

/** The kid encodes its creation time, so age needs no extra metadata. */
function createdAt(kid: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z/.exec(kid);
  if (!m) return 0;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!);
}

function loadKey(dir: string, kid: string): SigningKey {
  const privatePem = fs.readFileSync(path.join(dir, `${kid}.pem`), 'utf8');
  const publicKey = createPublicKey(createPrivateKey(privatePem));
  return {
    kid,
    privatePem,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: SIGNING_ALGORITHM, use: 'sig' },
  };
}

export class Keyring {
  private keys = new Map<string, SigningKey>();
  private current!: SigningKey;
  private lastReload = 0;

  private constructor(
    private readonly dir: string,
    private readonly rescanMs: number,
  ) {}

  /** Opens the key directory, creating it and a first key when it is empty. */
  static open(dir: string, opts: { rescanMs?: number } = {}): Keyring {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const ring = new Keyring(dir, opts.rescanMs ?? SIGNING_RESCAN_MS);
    if (ring.kidsOnDisk().length === 0) ring.writeNewKey();
    ring.reload();
    return ring;
  }

  private kidsOnDisk(): string[] {
    return fs
      .readdirSync(this.dir)
      .map((f) => KEY_FILE.exec(f)?.[1])
      .filter((k): k is string => k !== undefined)
      .sort();
  }

  private writeNewKey(): string {
    const kid = newKid(this.kidsOnDisk().at(-1));
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    // Write then rename, so a concurrent reader never sees half a key.
    const tmp = path.join(this.dir, `.${kid}.tmp`);
    fs.writeFileSync(tmp, pem, { mode: 0o600 });
    fs.renameSync(tmp, path.join(this.dir, `${kid}.pem`));
    return kid;
  }

  /** Re-reads the directory: picks up keys rotated by another process or the CLI. */
  reload(): void {
    const kids = this.kidsOnDisk();
    if (kids.length === 0) throw new Error(`no signing keys in ${this.dir}`);
    const next = new Map<string, SigningKey>();
    for (const kid of kids) next.set(kid, this.keys.get(kid) ?? loadKey(this.dir, kid));
    this.keys = next;
    this.current = next.get(kids[kids.length - 1]!)!;
    this.lastReload = Date.now();
  }

  /**
   * Adds a new signing key and deletes keys whose successor has existed longer than
   * `retireAfterSeconds`: pass the longest token lifetime plus the rescan interval (every
   * process has switched to the successor by then, and no token the old key signed is
   * still valid). Returns the new kid.
   */
  rotate(retireAfterSeconds: number): { kid: string; pruned: string[] } {
    const kid = this.writeNewKey();
    const kids = this.kidsOnDisk();
    const pruned: string[] = [];
    const horizon = Date.now() - retireAfterSeconds * 1000;
    for (let i = 0; i < kids.length - 1; i++) {
      const successor = kids[i + 1]!;
      if (createdAt(successor) <= horizon) {
        fs.rmSync(path.join(this.dir, `${kids[i]}.pem`), { force: true });
        pruned.push(kids[i]!);
      }
    }
    this.reload();
    return { kid, pruned };
  }

  /** The newest key on disk (checked at most every `rescanMs`): a rotation elsewhere takes effect here. */
  get signingKey(): SigningKey {
    if (Date.now() - this.lastReload > this.rescanMs) {
      try {
        this.reload();
      } catch {
        // Keys unreadable for a moment (being rotated): keep signing with the current one.
      }
    }
    return this.current;
  }

  /** The public key for `kid`, re-reading the directory (rate-limited) when it is unknown. */
  publicKeyPem(kid: string | undefined): string | undefined {
    if (!kid) return undefined;
    let key = this.keys.get(kid);
    if (!key && Date.now() - this.lastReload > RELOAD_BACKOFF_MS && KEY_FILE.test(`${kid}.pem`)) {
      this.reload();
      key = this.keys.get(kid);
    }
    return key?.publicPem;
  }

  jwks(): { keys: SigningKey['jwk'][] } {
    return { keys: [...this.keys.values()].map((k) => k.jwk) };
  }
}
