// Output from somewhere berth does not control (a command on a tenant's machine, a
// guest's console), kept within a fixed size: everything while it is small, then its
// first and last bytes, which is what a message about it needs.

export class BoundedOutput {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  /** Every byte seen, kept or not. */
  total = 0;

  constructor(private readonly keep: { head: number; tail: number }) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.headBytes < this.keep.head) {
      const taken = chunk.subarray(0, this.keep.head - this.headBytes);
      this.head.push(taken);
      this.headBytes += taken.length;
      chunk = chunk.subarray(taken.length);
    }
    if (!chunk.length) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    // Drop whole chunks from the front, then trim the first one, once past the tail size.
    while (this.tailBytes - this.tail[0]!.length >= this.keep.tail) this.tailBytes -= this.tail.shift()!.length;
    if (this.tailBytes > this.keep.tail) {
      this.tail[0] = this.tail[0]!.subarray(this.tailBytes - this.keep.tail);
      this.tailBytes = this.keep.tail;
    }
  }

  /** Whether every byte seen is still here. */
  get complete(): boolean {
    return this.total === this.headBytes + this.tailBytes;
  }

  /** A short form for a message: the first and last `chars` characters. */
  excerpt(chars = 200): string {
    const text = this.toString().trim();
    return text.length <= 2 * chars ? text : `${text.slice(0, chars)} […] ${text.slice(-chars)}`;
  }

  toString(): string {
    const head = Buffer.concat(this.head).toString('utf8');
    const tail = Buffer.concat(this.tail).toString('utf8');
    return this.complete ? head + tail : `${head}\n[… ${this.total - this.headBytes - this.tailBytes} bytes left out …]\n${tail}`;
  }
}
