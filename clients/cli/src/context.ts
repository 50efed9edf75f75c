// What every command gets: the global options, the connection (made when first needed,
// so `--help` and usage errors never touch the network or the config files), and output
// that is JSON for scripts or text for people.
import type { Command } from 'commander';
import { resolveSettings } from './config/settings.js';
import { connect, type Connection } from './http/connection.js';

export interface GlobalOptions {
  url?: string;
  ca?: string;
  json?: boolean;
}

export class Context {
  private connection?: Connection;

  constructor(readonly options: GlobalOptions) {}

  /** The context of the command running now (one per run of berth). */
  static current?: Context;

  static of(command: Command): Context {
    Context.current ??= new Context(command.optsWithGlobals<GlobalOptions>());
    return Context.current;
  }

  get json(): boolean {
    return Boolean(this.options.json);
  }

  /** The server this run talks to, once known (for error messages). */
  get serverUrl(): string | undefined {
    return this.connection?.url;
  }

  connect(): Connection {
    this.connection ??= connect(resolveSettings(this.options));
    return this.connection;
  }

  /** The typed API, authenticated as the stored session. */
  get api() {
    return this.connect().client.api;
  }

  /** `data` as JSON with --json; otherwise the text `human` makes (nothing if it returns nothing). */
  print(data: unknown, human: () => string | undefined | void): void {
    if (this.json) {
      process.stdout.write(`${JSON.stringify(data ?? null, null, 2)}\n`);
      return;
    }
    const text = human();
    if (text) process.stdout.write(`${text}\n`);
  }

  /** A line of text output, for people only (--json prints the whole result at the end instead). */
  say(text: string): void {
    if (!this.json) process.stdout.write(`${text}\n`);
  }

  /** A remark for the person at the terminal (stderr): never part of the output scripts read. */
  note(text: string): void {
    process.stderr.write(`${text}\n`);
  }

  async close(): Promise<void> {
    await this.connection?.close();
  }
}
