// Which berth to talk to and which CA to trust: a flag, else the environment, else the
// config file ($XDG_CONFIG_HOME/berth/config.json).
import fs from 'node:fs';
import path from 'node:path';
import { CliError, EXIT, usageError } from '../errors.js';
import { readJsonFile, writePrivateJsonFile } from './files.js';
import { configFile } from './paths.js';

export interface StoredConfig {
  url?: string;
  ca?: string;
}

export const CONFIG_KEYS = ['url', 'ca'] as const;
export type ConfigKey = (typeof CONFIG_KEYS)[number];

export function readConfig(): StoredConfig {
  const file = configFile();
  const value = readJsonFile(file);
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CliError(`${file} must hold a JSON object`, EXIT.usage);
  const config = value as Record<string, unknown>;
  for (const key of CONFIG_KEYS) {
    if (config[key] !== undefined && typeof config[key] !== 'string') throw new CliError(`${file}: "${key}" must be a string`, EXIT.usage);
  }
  return { url: config.url as string | undefined, ca: config.ca as string | undefined };
}

export function writeConfig(config: StoredConfig): void {
  writePrivateJsonFile(configFile(), config);
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/**
 * The server's base URL, normalised (no trailing slash). Plain http only to this machine:
 * anywhere else a password and tokens would cross the network in the clear.
 */
export function normaliseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`not a URL: ${raw} (e.g. https://berth.example.com)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw usageError(`the server URL must start with https:// (got ${raw})`);
  if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname)) {
    throw usageError(`refusing plain http to ${url.hostname}: use https:// (http is accepted only for this machine)`);
  }
  if (url.username || url.password) throw usageError('put no credentials in the server URL: use berth login');
  if (url.search || url.hash) throw usageError(`the server URL takes no query or fragment (got ${raw})`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

export interface ResolvedSettings {
  url: string;
  /** The extra CA certificate file to trust, if any. */
  caFile?: string;
}

export interface SettingFlags {
  url?: string;
  ca?: string;
}

/** The server and CA for this run; a missing server is a usage error naming the three ways to give one. */
export function resolveSettings(flags: SettingFlags): ResolvedSettings {
  const stored = readConfig();
  const rawUrl = flags.url ?? process.env.BERTH_URL ?? stored.url;
  if (!rawUrl) {
    throw usageError('no berth server: give --url https://…, set BERTH_URL, or run `berth config set url https://…`');
  }
  const caFile = flags.ca ?? process.env.BERTH_CA ?? stored.ca;
  return { url: normaliseUrl(rawUrl), ...(caFile && { caFile: path.resolve(caFile) }) };
}

/** The PEM text of a CA file, checked enough to give a clear message instead of a TLS error later. */
export function readCaFile(file: string): string {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read the CA file ${file}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw usageError(`${file} holds no PEM certificate`);
  return pem;
}
