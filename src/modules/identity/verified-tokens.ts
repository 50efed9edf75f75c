// Access tokens this process has verified, so a token used again skips the Ed25519
// verify until it expires. Only verified tokens go in (a failure is never remembered, so
// made-up tokens cannot fill it), and the whole cache is bounded in bytes: the least
// recently used tokens leave first. A Map in insertion order is the LRU: a hit is one
// lookup plus a move to the end, cheaper than any general-purpose cache on this path.
export interface VerifiedToken<Claims> {
  claims: Claims;
  /** The key that verified it: a hit counts only while that key is still known. */
  kid: string;
  /** Epoch milliseconds after which the token is no longer valid. */
  expiresAt: number;
}

/**
 * What one entry may hold at most, in bytes: the token as the key and the claims decoded
 * from it (both at most 2 bytes per character; the claims are shorter than the token),
 * plus the Map slot and the entry and claims objects.
 */
export function entryBytes(token: string): number {
  return 4 * token.length + 512;
}

export class VerifiedTokenCache<Claims> {
  private readonly entries = new Map<string, VerifiedToken<Claims>>();
  private usedBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** The entry of a token verified earlier and not yet expired. */
  get(token: string, now: number): VerifiedToken<Claims> | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    if (entry.expiresAt <= now) {
      this.usedBytes -= entryBytes(token);
      return undefined;
    }
    this.entries.set(token, entry); // most recently used now
    return entry;
  }

  /** Call only with a token that has just passed verification. */
  remember(token: string, entry: VerifiedToken<Claims>): void {
    const cost = entryBytes(token);
    if (cost > this.maxBytes) return;
    this.forget(token);
    for (const oldest of this.entries.keys()) {
      if (this.usedBytes + cost <= this.maxBytes) break;
      this.forget(oldest);
    }
    this.entries.set(token, entry);
    this.usedBytes += cost;
  }

  forget(token: string): void {
    if (this.entries.delete(token)) this.usedBytes -= entryBytes(token);
  }

  /** The bytes the entries may hold at most (never above maxBytes). */
  get bytes(): number {
    return this.usedBytes;
  }

  get size(): number {
    return this.entries.size;
  }
}
