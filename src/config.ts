// The whole environment berth reads, validated once at start-up. Every variable here is
// listed in the README's configuration table; add it there when you add it here.
import os from 'node:os';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { sshHost } from './shared/hosts.js';
import { USERNAME_PATTERN, USERNAME_RULE } from './shared/usernames.js';

const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const environment = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    HOST: z.string().min(1).default('127.0.0.1'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    DATABASE_URL: z
      .string()
      .regex(/^(mysql|mariadb):\/\//, 'must be a mysql:// or mariadb:// URL')
      .optional(),
    BERTH_DATA_DIR: z.string().min(1).default('.data'),
    BERTH_DATABASE_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2000),
    // true/false, or the proxies' addresses (comma-separated IPs or CIDRs), as Fastify takes them.
    BERTH_TRUST_PROXY: z
      .string()
      .transform((v): boolean | string => (['true', '1', 'yes'].includes(v) ? true : ['false', '0', 'no'].includes(v) ? false : v))
      .default(false),
    // The address clients use (through the proxy): the OpenAPI document's `servers`.
    BERTH_PUBLIC_URL: z
      .url({ protocol: /^https?$/, error: 'must be an absolute http:// or https:// URL' })
      .max(2048)
      .refine((v) => !/[?#]/.test(v), 'must not have a query or a fragment')
      .transform((v) => v.replace(/\/+$/, ''))
      .optional(),

    ADMIN_USERNAME: z.string().regex(USERNAME_PATTERN, USERNAME_RULE).default('admin'),
    ADMIN_PASSWORD: z.string().min(8).max(256).optional(),
    BERTH_REGISTRATION: z.enum(['open', 'closed']).default('open'),
    BERTH_REQUEST_TIMEOUT_SECONDS: seconds(300),
    BERTH_IDLE_TIMEOUT_SECONDS: seconds(60),

    BERTH_JWT_ISSUER: z.string().min(1).default('berth'),
    BERTH_JWT_AUDIENCE: z.string().min(1).default('berth'),
    BERTH_JWT_KEYS_DIR: z.string().min(1).optional(),
    BERTH_ACCESS_TOKEN_TTL_SECONDS: seconds(15 * 60),
    BERTH_REFRESH_IDLE_TTL_SECONDS: seconds(14 * 24 * 3600),
    BERTH_SESSION_MAX_TTL_SECONDS: seconds(30 * 24 * 3600),
    BERTH_SESSION_CACHE_MS: z.coerce.number().int().min(0).max(60_000).default(1000),
    BERTH_REFRESH_REUSE_WINDOW_SECONDS: seconds(24 * 3600),
    BERTH_PRUNE_INTERVAL_SECONDS: seconds(600),

    BERTH_ARGON2_MEMORY_KIB: z.coerce.number().int().min(19_456).default(19_456),
    BERTH_ARGON2_TIME_COST: z.coerce.number().int().min(2).default(2),
    BERTH_ARGON2_PARALLELISM: z.coerce.number().int().min(1).max(16).default(1),

    BERTH_LOGIN_MAX_PER_IP: z.coerce.number().int().positive().default(30),
    BERTH_LOGIN_MAX_PER_USERNAME: z.coerce.number().int().positive().default(10),
    BERTH_LOGIN_WINDOW_SECONDS: seconds(60),
    BERTH_REGISTER_MAX_PER_IP: z.coerce.number().int().positive().default(10),
    BERTH_REGISTER_MAX_PER_USERNAME: z.coerce.number().int().positive().default(5),
    BERTH_PASSWORD_CHANGE_MAX_PER_IP: z.coerce.number().int().positive().default(30),
    BERTH_PASSWORD_CHANGE_MAX_PER_USER: z.coerce.number().int().positive().default(5),

    BERTH_SECRET_KEY: z
      .string()
      .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 bytes, base64-encoded (openssl rand -base64 32)')
      .optional(),
    BERTH_SSH_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).default(10_000),
    BERTH_SSH_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
    // Run (never through a shell) for each machine that waits in needs_reprovision.
    BERTH_REPROVISION_COMMAND: z
      .string()
      .max(4096)
      .refine((v) => path.isAbsolute(v), 'must be the absolute path of an executable (it is run without a shell, with arguments name host port)')
      .optional(),
    BERTH_REPROVISION_TIMEOUT_SECONDS: seconds(3600),
    BERTH_EXPIRY_INTERVAL_SECONDS: z.coerce.number().positive().default(30),
    BERTH_RESERVATION_DEFAULT_MINUTES: z.coerce.number().int().positive().default(60),
    BERTH_RESERVATION_MAX_MINUTES: z.coerce.number().int().positive().default(8 * 60),
    BERTH_RESERVATION_MAX_TOTAL_MINUTES: z.coerce.number().int().positive().default(24 * 60),
    BERTH_RESERVATION_MAX_MACHINES_PER_USER: z.coerce.number().int().positive().default(10),
    BERTH_RESERVATION_LEASE_SECONDS: z.coerce.number().positive().default(120),
    // How often the scheduler promotes the queue and starts bookings (also right after a release).
    BERTH_SCHEDULER_INTERVAL_SECONDS: z.coerce.number().positive().default(5),
    BERTH_BOOKING_HORIZON_DAYS: z.coerce.number().int().min(1).max(366).default(30),
    BERTH_QUEUE_MAX_WAIT_MINUTES: z.coerce.number().int().min(1).max(7 * 24 * 60).default(24 * 60),
    // Minutes before a reservation's end at which a notice is written to its account's terminals.
    BERTH_NOTICE_MINUTES: z
      .string()
      .regex(/^(\d{1,4}(,\d{1,4})*)?$/, 'must be a comma-separated list of minutes, like 10,2 (empty: no notices)')
      .transform((v) => [...new Set(v.split(',').filter(Boolean).map(Number))].filter((n) => n > 0).sort((a, b) => b - a))
      .default([10, 2]),
    // CIDRs a webhook may reach despite the block on loopback, private and link-local addresses.
    BERTH_WEBHOOK_ALLOW_HOSTS: z
      .string()
      .transform((v) => v.split(',').map((c) => c.trim()).filter(Boolean))
      .refine((cidrs) => cidrs.every((c) => ipaddr.isValidCIDR(c)), 'must be a comma-separated list of CIDRs, like 10.0.5.0/24,127.0.0.1/32')
      .default([]),
    BERTH_WEBHOOK_TIMEOUT_SECONDS: z.coerce.number().positive().max(60).default(15),
    // The waits before each retry of a failed delivery; then it is given up (the Standard Webhooks schedule).
    BERTH_WEBHOOK_RETRY_SECONDS: z
      .string()
      .regex(/^\d+(\.\d+)?(,\d+(\.\d+)?){0,19}$/, 'must be a comma-separated list of at most 20 waits in seconds, like 5,300,1800')
      .transform((v) => v.split(',').map(Number))
      .default([5, 300, 1800, 7200, 18000, 36000, 36000]),
    BERTH_DOCKER_SOCKET: z.string().min(1).default('/var/run/docker.sock'),
    BERTH_CACHE_DIR: z.string().min(1).optional(),
    BERTH_IMAGE_CONTEXT_MAX_MB: z.coerce.number().int().positive().default(512),
    BERTH_IMAGE_WATCH_SECONDS: seconds(30),
    BERTH_NODE_NAME: z.string().min(1).max(255).default(os.hostname()),
    BERTH_VM_ACCEL: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
    BERTH_VM_DEFAULT_CPUS: z.coerce.number().int().min(1).default(1),
    BERTH_VM_DEFAULT_MEMORY_MB: z.coerce.number().int().min(128).default(512),
    BERTH_VM_MAX_CPUS: z.coerce.number().int().min(1).default(os.availableParallelism()),
    BERTH_VM_MAX_MEMORY_MB: z.coerce.number().int().min(128).default(8192),
    BERTH_VM_BOOT_TIMEOUT_SECONDS: seconds(300),
    BERTH_VM_WATCH_SECONDS: z.coerce.number().positive().default(5),
    BERTH_VM_BIND: z.ipv4({ error: 'must be an IPv4 address (0.0.0.0: every address of this host)' }).default('127.0.0.1'),
    BERTH_VM_PUBLIC_HOST: sshHost.optional(),
    BERTH_VM_PORTS: z
      .string()
      .regex(/^\d{1,5}-\d{1,5}$/, 'must be a port range like 40000-40999')
      .transform((v) => v.split('-').map(Number) as [number, number])
      .refine(([from, to]) => from >= 1024 && to <= 65535 && from <= to, 'must be a range within 1024-65535, low-high')
      .default([40000, 40999]),
    BERTH_VM_EGRESS: z.enum(['none', 'internet']).default('none'),
    BERTH_VM_SNAPSHOTS: z.enum(['on', 'off']).default('on'),
  })
  .refine((env) => env.BERTH_SESSION_MAX_TTL_SECONDS >= env.BERTH_ACCESS_TOKEN_TTL_SECONDS, {
    message: 'BERTH_SESSION_MAX_TTL_SECONDS must be at least BERTH_ACCESS_TOKEN_TTL_SECONDS',
    path: ['BERTH_SESSION_MAX_TTL_SECONDS'],
  })
  .refine((env) => env.BERTH_RESERVATION_MAX_TOTAL_MINUTES >= env.BERTH_RESERVATION_MAX_MINUTES, {
    message: 'BERTH_RESERVATION_MAX_TOTAL_MINUTES must be at least BERTH_RESERVATION_MAX_MINUTES',
    path: ['BERTH_RESERVATION_MAX_TOTAL_MINUTES'],
  })
  .refine((env) => env.BERTH_VM_MAX_CPUS >= env.BERTH_VM_DEFAULT_CPUS && env.BERTH_VM_MAX_MEMORY_MB >= env.BERTH_VM_DEFAULT_MEMORY_MB, {
    message: 'the VM defaults (BERTH_VM_DEFAULT_CPUS, BERTH_VM_DEFAULT_MEMORY_MB) must be within the maxima',
    path: ['BERTH_VM_DEFAULT_CPUS'],
  })
  .refine((env) => env.BERTH_RESERVATION_MAX_MINUTES >= env.BERTH_RESERVATION_DEFAULT_MINUTES, {
    message: 'BERTH_RESERVATION_MAX_MINUTES must be at least BERTH_RESERVATION_DEFAULT_MINUTES',
    path: ['BERTH_RESERVATION_MAX_MINUTES'],
  });

export type Environment = z.infer<typeof environment>;

export interface Config {
  env: Environment['NODE_ENV'];
  port: number;
  host: string;
  logLevel: Environment['LOG_LEVEL'];
  /** Unset: berth runs its own MariaDB in `dataDir`. */
  databaseUrl: string | undefined;
  /** How long one database operation may take before the request is answered 503 database_unavailable. */
  databaseTimeoutMs: number;
  dataDir: string;
  /** Whether (or from which addresses) to believe X-Forwarded-For: the login throttle keys on the client address. */
  trustProxy: boolean | string;
  /**
   * A request (headers and body) must arrive within `requestMs`; a connection on which
   * nothing moves for `idleMs` is closed. A slow upload cannot hold a file or a connection.
   */
  timeouts: { requestMs: number; idleMs: number };
  /** The address clients reach berth at (e.g. https://berth.example.com); unset → the document names no server. */
  publicUrl: string | undefined;
  admin: { username: string; password: string | undefined };
  registration: 'open' | 'closed';
  jwt: {
    issuer: string;
    audience: string;
    keysDir: string;
    accessTtlSeconds: number;
  };
  sessions: {
    refreshIdleTtlSeconds: number;
    maxTtlSeconds: number;
    /** How long one process may trust a positive session check before asking the database again. */
    cacheMs: number;
    /** How long a spent refresh token is kept: presented again within it, it revokes its session. */
    reuseWindowSeconds: number;
    /** How often dead sessions and unusable refresh tokens are deleted. */
    pruneIntervalSeconds: number;
  };
  argon2: { memoryCost: number; timeCost: number; parallelism: number };
  /** Attempts per client address and per account, in one window, on the routes that hash or check passwords. */
  throttles: {
    windowSeconds: number;
    login: { perAddress: number; perAccount: number };
    register: { perAddress: number; perAccount: number };
    passwordChange: { perAddress: number; perAccount: number };
  };
  /** Base64 AES-256 key for machine credentials; unset → generated into `dataDir/secret.key`. */
  secretKey: string | undefined;
  ssh: { connectTimeoutMs: number; commandTimeoutMs: number };
  /**
   * What reinstalls a machine a tenant was root on (an executable, run as `path name host port`);
   * null: the machine waits in needs_reprovision for an admin.
   */
  reprovision: { command: string; timeoutMs: number } | null;
  /** The Docker engine that builds images. */
  dockerSocket: string;
  images: {
    maxContextBytes: number;
    /** How often builds whose process stopped heartbeating are marked failed. */
    watchSeconds: number;
  };
  /** Expensive fixtures made once per machine (the VM kernel); default `dataDir/cache`. */
  cacheDir: string;
  /** This host's name in VM records: each berth process manages the VMs of its host. */
  nodeName: string;
  vms: {
    accel: 'auto' | 'kvm' | 'tcg';
    defaultCpus: number;
    defaultMemoryMb: number;
    maxCpus: number;
    maxMemoryMb: number;
    bootTimeoutMs: number;
    watchSeconds: number;
    /** The address QEMU binds VMs' forwarded SSH ports on. */
    bind: string;
    /** Where users connect to those ports: the VM host's name or address as clients see it. */
    publicHost: string;
    /** The ports VMs' SSH is forwarded from, [first, last] (a firewall opens exactly these). */
    ports: [number, number];
    /** What guests may reach: nothing (`none`), or anything but this host (`internet`). */
    egress: 'none' | 'internet';
    /** Start VMs as clones of a template snapshot of their image (off: every start is a cold boot). */
    snapshots: boolean;
  };
  reservations: {
    expiryIntervalSeconds: number;
    defaultMinutes: number;
    maxMinutes: number;
    maxTotalMinutes: number;
    maxMachinesPerUser: number;
    /** How long a process may work on a reservation before another may take it over. */
    leaseSeconds: number;
    /** How often the scheduler job ticks (it also runs right after a release). */
    schedulerIntervalSeconds: number;
    /** How far ahead a booking may start. */
    bookingHorizonDays: number;
    /** The most a request may wait in the queue. */
    maxWaitMinutes: number;
    /** Minutes before the end at which a notice reaches the account's terminals, largest first. */
    noticeMinutes: number[];
  };
  webhooks: {
    /** CIDRs let through despite the block on loopback, private, link-local and this host's addresses. */
    allowHosts: string[];
    timeoutMs: number;
    /** The waits before each retry of a failed delivery, in order; when they are used up it has failed. */
    retryDelaysMs: number[];
  };
}

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, as they do in most shells' `VAR= cmd` idiom.
  const defined = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = environment.safeParse(defined);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || '(environment)'}: ${i.message}`));
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.BERTH_DATA_DIR);
  return {
    env: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    databaseTimeoutMs: e.BERTH_DATABASE_TIMEOUT_MS,
    dataDir,
    trustProxy: e.BERTH_TRUST_PROXY,
    timeouts: { requestMs: e.BERTH_REQUEST_TIMEOUT_SECONDS * 1000, idleMs: e.BERTH_IDLE_TIMEOUT_SECONDS * 1000 },
    publicUrl: e.BERTH_PUBLIC_URL,
    admin: { username: e.ADMIN_USERNAME, password: e.ADMIN_PASSWORD },
    registration: e.BERTH_REGISTRATION,
    jwt: {
      issuer: e.BERTH_JWT_ISSUER,
      audience: e.BERTH_JWT_AUDIENCE,
      keysDir: path.resolve(e.BERTH_JWT_KEYS_DIR ?? path.join(dataDir, 'keys')),
      accessTtlSeconds: e.BERTH_ACCESS_TOKEN_TTL_SECONDS,
    },
    sessions: {
      refreshIdleTtlSeconds: e.BERTH_REFRESH_IDLE_TTL_SECONDS,
      maxTtlSeconds: e.BERTH_SESSION_MAX_TTL_SECONDS,
      cacheMs: e.BERTH_SESSION_CACHE_MS,
      reuseWindowSeconds: e.BERTH_REFRESH_REUSE_WINDOW_SECONDS,
      pruneIntervalSeconds: e.BERTH_PRUNE_INTERVAL_SECONDS,
    },
    argon2: {
      memoryCost: e.BERTH_ARGON2_MEMORY_KIB,
      timeCost: e.BERTH_ARGON2_TIME_COST,
      parallelism: e.BERTH_ARGON2_PARALLELISM,
    },
    throttles: {
      windowSeconds: e.BERTH_LOGIN_WINDOW_SECONDS,
      login: { perAddress: e.BERTH_LOGIN_MAX_PER_IP, perAccount: e.BERTH_LOGIN_MAX_PER_USERNAME },
      register: { perAddress: e.BERTH_REGISTER_MAX_PER_IP, perAccount: e.BERTH_REGISTER_MAX_PER_USERNAME },
      passwordChange: { perAddress: e.BERTH_PASSWORD_CHANGE_MAX_PER_IP, perAccount: e.BERTH_PASSWORD_CHANGE_MAX_PER_USER },
    },
    secretKey: e.BERTH_SECRET_KEY,
    ssh: { connectTimeoutMs: e.BERTH_SSH_CONNECT_TIMEOUT_MS, commandTimeoutMs: e.BERTH_SSH_COMMAND_TIMEOUT_MS },
    reprovision: e.BERTH_REPROVISION_COMMAND ? { command: e.BERTH_REPROVISION_COMMAND, timeoutMs: e.BERTH_REPROVISION_TIMEOUT_SECONDS * 1000 } : null,
    dockerSocket: e.BERTH_DOCKER_SOCKET,
    images: { maxContextBytes: e.BERTH_IMAGE_CONTEXT_MAX_MB * 1024 * 1024, watchSeconds: e.BERTH_IMAGE_WATCH_SECONDS },
    cacheDir: path.resolve(e.BERTH_CACHE_DIR ?? path.join(dataDir, 'cache')),
    nodeName: e.BERTH_NODE_NAME,
    vms: {
      accel: e.BERTH_VM_ACCEL,
      defaultCpus: e.BERTH_VM_DEFAULT_CPUS,
      defaultMemoryMb: e.BERTH_VM_DEFAULT_MEMORY_MB,
      maxCpus: e.BERTH_VM_MAX_CPUS,
      maxMemoryMb: e.BERTH_VM_MAX_MEMORY_MB,
      bootTimeoutMs: e.BERTH_VM_BOOT_TIMEOUT_SECONDS * 1000,
      watchSeconds: e.BERTH_VM_WATCH_SECONDS,
      bind: e.BERTH_VM_BIND,
      publicHost: e.BERTH_VM_PUBLIC_HOST ?? (e.BERTH_VM_BIND === '0.0.0.0' ? os.hostname() : e.BERTH_VM_BIND),
      ports: e.BERTH_VM_PORTS,
      egress: e.BERTH_VM_EGRESS,
      snapshots: e.BERTH_VM_SNAPSHOTS === 'on',
    },
    reservations: {
      expiryIntervalSeconds: e.BERTH_EXPIRY_INTERVAL_SECONDS,
      defaultMinutes: e.BERTH_RESERVATION_DEFAULT_MINUTES,
      maxMinutes: e.BERTH_RESERVATION_MAX_MINUTES,
      maxTotalMinutes: e.BERTH_RESERVATION_MAX_TOTAL_MINUTES,
      maxMachinesPerUser: e.BERTH_RESERVATION_MAX_MACHINES_PER_USER,
      leaseSeconds: e.BERTH_RESERVATION_LEASE_SECONDS,
      schedulerIntervalSeconds: e.BERTH_SCHEDULER_INTERVAL_SECONDS,
      bookingHorizonDays: e.BERTH_BOOKING_HORIZON_DAYS,
      maxWaitMinutes: e.BERTH_QUEUE_MAX_WAIT_MINUTES,
      noticeMinutes: e.BERTH_NOTICE_MINUTES,
    },
    webhooks: {
      allowHosts: e.BERTH_WEBHOOK_ALLOW_HOSTS,
      timeoutMs: e.BERTH_WEBHOOK_TIMEOUT_SECONDS * 1000,
      retryDelaysMs: e.BERTH_WEBHOOK_RETRY_SECONDS.map((s) => Math.round(s * 1000)),
    },
  };
}
