// How a webhook leaves berth: one POST, on a connection of its own, whose every resolved
// address is checked by the address policy at connect time — in the socket's own `lookup`,
// so that a name which resolved to a public address when the webhook was saved and to
// 127.0.0.1 now (DNS rebinding) is refused, not reached. Redirects are never followed (a
// 3xx is the answer), the whole exchange has one time limit, and of the answer's body only
// the first few KB are read and kept.
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net, { type LookupFunction } from 'node:net';
import { withTimeout } from '../../shared/time-limit.js';
import type { AddressPolicy } from './address-policy.js';

/** Every address a name resolves to (the system's resolver by default; tests answer as a rebinding DNS server would). */
export type ResolveHost = (hostname: string) => Promise<{ address: string; family: number }[]>;

export const systemResolver: ResolveHost = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

/** How much of an answer's body is read and kept. */
export const RESPONSE_BODY_MAX_BYTES = 4096;
/** How long the check of a URL being saved waits for its name to resolve. */
const CHECK_RESOLVE_MS = 5000;

class AddressRefused extends Error {
  override name = 'AddressRefused';
}

const refusedMessage = (host: string, address: string, why: string) =>
  `${host === address ? 'the address' : `${host} resolves to`} ${address} (${why}), which webhooks may not reach; BERTH_WEBHOOK_ALLOW_HOSTS lets a CIDR through`;

/** What came of one attempt: the endpoint's answer, or why there was none. */
export interface SendOutcome {
  statusCode: number | null;
  retryAfter: string | null;
  /** The start of the answer's body (RESPONSE_BODY_MAX_BYTES at most); null when none came. */
  body: string | null;
  /** Why nothing (or no whole answer) was heard; null when the answer came. */
  error: string | null;
  durationMs: number;
}

export interface SendRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** Aborts the attempt (berth is closing). */
  signal?: AbortSignal;
}

export interface Egress {
  /** For a URL being saved: why it cannot be reached (refused address, a name that does not exist), or null. */
  refusalOf(url: URL): Promise<string | null>;
  send(request: SendRequest): Promise<SendOutcome>;
}

const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, '$1');

function describe(err: unknown): string {
  if (err instanceof AddressRefused) return err.message;
  const e = err as NodeJS.ErrnoException;
  const text = e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
  return text.slice(0, 1024);
}

export function createEgress(deps: { policy: AddressPolicy; timeoutMs: number; resolve?: ResolveHost }): Egress {
  const { policy, timeoutMs } = deps;
  const resolve = deps.resolve ?? systemResolver;

  /** The socket's lookup: every address the name has is checked, and one refused refuses the connection. */
  const guardedLookup: LookupFunction = (hostname, options, callback) => {
    resolve(hostname).then(
      (found) => {
        const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
        const addresses = found.filter((a) => !family || a.family === family);
        for (const a of found) {
          const why = policy.refusal(a.address);
          if (why) return callback(new AddressRefused(refusedMessage(hostname, a.address, why)), '', 0);
        }
        if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
        if (options.all) return (callback as unknown as (err: null, all: typeof addresses) => void)(null, addresses);
        callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };

  async function refusalOf(url: URL): Promise<string | null> {
    const host = hostOf(url);
    if (net.isIP(host)) {
      const why = policy.refusal(host);
      return why && refusedMessage(host, host, why);
    }
    try {
      for (const a of await withTimeout(resolve(host), CHECK_RESOLVE_MS, () => new Error('timed out'))) {
        const why = policy.refusal(a.address);
        if (why) return refusedMessage(host, a.address, why);
      }
      return null;
    } catch (err) {
      // A name that does not exist is a mistake worth saying now; a resolver that does not
      // answer at the moment is not the URL's fault (every delivery resolves it again).
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOTFOUND' || code === 'ENODATA' ? `${host} does not resolve` : null;
    }
  }

  function send({ url, headers, body, signal }: SendRequest): Promise<SendOutcome> {
    const started = Date.now();
    const target = new URL(url);
    const host = hostOf(target);
    // A literal address never goes through a lookup: it is checked here.
    const literalRefusal = net.isIP(host) ? policy.refusal(host) : null;
    if (literalRefusal) {
      return Promise.resolve({ statusCode: null, retryAfter: null, body: null, error: refusedMessage(host, host, literalRefusal), durationMs: 0 });
    }
    return new Promise((done) => {
      let settled = false;
      let statusCode: number | null = null;
      let retryAfter: string | null = null;
      const chunks: Buffer[] = [];
      let kept = 0;
      const finish = (error: string | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const text = statusCode === null ? null : Buffer.concat(chunks).toString('utf8');
        done({ statusCode, retryAfter, body: text, error, durationMs: Date.now() - started });
      };
      const request = (target.protocol === 'https:' ? https : http).request(
        target,
        // agent false: a connection of its own, so that every attempt resolves (and checks) the name again.
        { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false, lookup: guardedLookup, signal },
        (response) => {
          statusCode = response.statusCode ?? null;
          const header = response.headers['retry-after'];
          retryAfter = typeof header === 'string' ? header : null;
          response.on('data', (chunk: Buffer) => {
            if (kept < RESPONSE_BODY_MAX_BYTES) {
              const part = chunk.subarray(0, RESPONSE_BODY_MAX_BYTES - kept);
              chunks.push(part);
              kept += part.length;
            }
            // Enough is read: the rest is not waited for.
            if (kept >= RESPONSE_BODY_MAX_BYTES) {
              finish(null);
              response.destroy();
            }
          });
          response.on('end', () => finish(null));
          response.on('error', () => finish(null));
          response.on('close', () => finish(null));
        },
      );
      const timer = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      request.on('error', (err) => finish(describe(err)));
      request.end(body);
    });
  }

  return { refusalOf, send };
}
