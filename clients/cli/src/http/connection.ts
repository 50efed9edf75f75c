// One run's connection to berth: the typed client over HTTPS (with an extra CA to trust,
// verification always on), and the access token, obtained from the stored refresh token
// the first time a request needs one and renewed before it expires.
import tls from 'node:tls';
import { createBerthClient, unwrap, type BerthClient } from '@berth/client';
import { Agent } from 'undici';
import { readCaFile, type ResolvedSettings } from '../config/settings.js';
import { sessionStore, withSessionsLock, type SessionStore } from '../config/sessions.js';
import { authError, LOG_IN_AGAIN } from '../errors.js';

/** Renew the access token this long before it expires (a command may run for minutes: builds, pools). */
const RENEW_BEFORE_MS = 60_000;

export interface Connection {
  url: string;
  /** Sends the access token on every operation that takes one. */
  client: BerthClient;
  /** Sends no token: register, log in, refresh, log out with the refresh token. */
  anonymous: BerthClient;
  /** This server's stored session (login and logout change it, under the lock). */
  store: SessionStore;
  /** Closes the connections kept alive, so the process can end. */
  close(): Promise<void>;
}

function dispatcherFor(settings: ResolvedSettings): Agent {
  return new Agent({
    // The extra CA is trusted besides the usual roots, as NODE_EXTRA_CA_CERTS would be.
    ...(settings.caFile && { connect: { ca: [...tls.rootCertificates, readCaFile(settings.caFile)] } }),
    // A build step may print nothing for minutes while its log is followed.
    bodyTimeout: 0,
  });
}

export function connect(settings: ResolvedSettings): Connection {
  const url = settings.url;
  const store = sessionStore(url);
  const dispatcher = dispatcherFor(settings);
  const requestInitExt = { dispatcher };
  const anonymous = createBerthClient({ baseUrl: url, requestInitExt, refreshLeewaySeconds: 0 });
  // A placeholder access token makes @berth/client mark the requests that need one; the
  // middleware below puts the real one in. The client never refreshes on its own (leeway 0):
  // only this file does, under the lock.
  const client = createBerthClient({
    baseUrl: url,
    requestInitExt,
    refreshLeewaySeconds: 0,
    tokens: { accessToken: 'pending', refreshToken: '', sessionId: '', accessExpiresAt: Number.MAX_SAFE_INTEGER },
  });

  let access: { token: string; expiresAt: number } | null = null;
  let refreshing: Promise<void> | null = null;

  const refresh = () =>
    withSessionsLock(async () => {
      const stored = store.read();
      if (!stored) throw authError(`not logged in to ${url}: run \`berth login\``);
      const result = await anonymous.api.POST('/v1/token/refresh', { body: { refresh_token: stored.refresh_token } });
      if (result.response.status === 401 || result.response.status === 403) {
        // The refresh token is dead (expired, revoked, reused, or its user disabled): it can never work again.
        store.remove();
        const code = (result.error as { code?: string } | undefined)?.code ?? `HTTP ${result.response.status}`;
        throw authError(`your session at ${url} has ended (${code}): ${LOG_IN_AGAIN}`);
      }
      const tokens = unwrap(result);
      store.save({ username: stored.username, refresh_token: tokens.refresh_token, session_id: tokens.session_id });
      access = { token: tokens.access_token, expiresAt: Date.now() + tokens.expires_in * 1000 };
    });

  async function accessToken(): Promise<string> {
    if (!access || access.expiresAt - RENEW_BEFORE_MS <= Date.now()) {
      refreshing ??= refresh().finally(() => (refreshing = null));
      await refreshing;
    }
    return access!.token;
  }

  client.api.use({
    async onRequest({ request }) {
      if (request.headers.get('authorization') !== 'Bearer pending') return undefined;
      request.headers.set('authorization', `Bearer ${await accessToken()}`);
      return request;
    },
  });

  return { url, client, anonymous, store, close: () => dispatcher.close() };
}
