// A small client over openapi-fetch: the base URL, the bearer token on the operations that
// take one, login and refresh (ahead of the access token's expiry), and problems as typed
// errors. Every operation of the API stays reachable, fully typed, through `api`.
import createClient, { type Client, type ClientOptions, type Middleware } from 'openapi-fetch';
import { BEARER_OPERATIONS } from './generated/operations.js';
import type { components, paths } from './generated/schema.js';
import { BerthHttpError, BerthProblemError, isProblem } from './problems.js';

export type TokenResponse = components['schemas']['TokenResponse'];

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  /** When the access token expires (milliseconds since the epoch, by this machine's clock). */
  accessExpiresAt: number;
}

export interface BerthClientOptions {
  /** Where berth is, e.g. `https://berth.example.com` (the document's `servers` entry). */
  baseUrl: string;
  /** Tokens from an earlier login, to resume a session. */
  tokens?: Tokens;
  /** Refresh this many seconds before the access token expires (default 30; 0: never on its own). */
  refreshLeewaySeconds?: number;
  /** Called after every login and refresh, e.g. to store the new refresh token. */
  onTokens?: (tokens: Tokens | null) => void;
  /** Passed to openapi-fetch: a custom `fetch`, extra headers, or `requestInitExt: { dispatcher }` (an undici Agent with its own CA). */
  fetch?: ClientOptions['fetch'];
  headers?: ClientOptions['headers'];
  requestInitExt?: ClientOptions['requestInitExt'];
}

export interface BerthClient {
  /** The typed openapi-fetch client: `api.GET('/v1/pool')` → `{ data, error, response }`. */
  readonly api: Client<paths>;
  readonly tokens: Tokens | null;
  /** Logs in (JSON body, or HTTP Basic with `{ basic: true }`) and keeps the tokens. */
  login(username: string, password: string, options?: { basic?: boolean }): Promise<Tokens>;
  /** Trades the refresh token for new tokens (the old refresh token is spent). */
  refresh(): Promise<Tokens>;
  /** Ends the session on the server and forgets the tokens. */
  logout(): Promise<void>;
  setTokens(tokens: Tokens | null): void;
}

/**
 * The data of a successful answer. A problem document is thrown as a `BerthProblemError`;
 * anything else (a proxy's error page, a code newer than this client) as a `BerthHttpError`.
 */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error === undefined && result.response.ok) return result.data as T;
  if (isProblem(result.error)) throw new BerthProblemError(result.error, result.response);
  throw new BerthHttpError(result.response, result.error);
}

/** HTTP Basic credentials: base64 of the UTF-8 bytes of `username:password`. */
function basicAuthorization(username: string, password: string): string {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

function toTokens(t: TokenResponse): Tokens {
  return { accessToken: t.access_token, refreshToken: t.refresh_token, sessionId: t.session_id, accessExpiresAt: Date.now() + t.expires_in * 1000 };
}

export function createBerthClient(options: BerthClientOptions): BerthClient {
  const { baseUrl, refreshLeewaySeconds = 30, onTokens, fetch, headers, requestInitExt } = options;
  const api = createClient<paths>({ baseUrl, fetch, headers, requestInitExt });
  let tokens: Tokens | null = options.tokens ?? null;
  let refreshing: Promise<Tokens> | null = null;

  const keep = (next: Tokens | null) => {
    tokens = next;
    onTokens?.(next);
  };

  async function refresh(): Promise<Tokens> {
    // One refresh at a time: a refresh token is single-use, a second use would revoke the session.
    refreshing ??= (async () => {
      if (!tokens) throw new Error('no refresh token: log in first');
      const data = unwrap(await api.POST('/v1/token/refresh', { body: { refresh_token: tokens.refreshToken } }));
      keep(toTokens(data));
      return tokens!;
    })().finally(() => (refreshing = null));
    return refreshing;
  }

  const bearer: Middleware = {
    async onRequest({ request, schemaPath }) {
      if (!BEARER_OPERATIONS.has(`${request.method} ${schemaPath}`) || request.headers.has('authorization') || !tokens) return undefined;
      if (refreshLeewaySeconds > 0 && tokens.accessExpiresAt - refreshLeewaySeconds * 1000 <= Date.now()) await refresh();
      request.headers.set('authorization', `Bearer ${tokens.accessToken}`);
      return request;
    },
  };
  api.use(bearer);

  return {
    api,
    get tokens() {
      return tokens;
    },
    setTokens: keep,
    refresh,
    async login(username, password, { basic = false } = {}) {
      const result = basic
        ? // No body with Basic (the document calls the body required: it is nullable, not optional).
          await api.POST('/v1/token', { body: undefined as never, headers: { authorization: basicAuthorization(username, password) } })
        : await api.POST('/v1/token', { body: { username, password } });
      keep(toTokens(unwrap(result)));
      return tokens!;
    },
    async logout() {
      if (!tokens) return;
      unwrap(await api.POST('/v1/logout', { body: { refresh_token: tokens.refreshToken } }));
      keep(null);
    },
  };
}
