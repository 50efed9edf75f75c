// Process entry: configuration, the database (embedded unless DATABASE_URL is set),
// migrations, the first admin, then listen; on SIGINT/SIGTERM close in reverse order.
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './infra/open-database.js';
import { Keyring } from './modules/identity/keyring.js';
import { ensureAdmin } from './modules/users/bootstrap.js';
import { createPasswordHasher } from './modules/identity/passwords.js';

/** Signals this soon after the first are the same Ctrl-C, relayed. */
const REPEATED_SIGNAL_MS = 1500;

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }

  const say = (msg: string) => console.log(`[berth] ${msg}`);
  // One Ctrl-C reaches berth more than once: the terminal signals the whole foreground
  // group (npm and berth) and npm forwards what it got to berth. Signals within a moment
  // of the first are that same Ctrl-C; one after that means "stop now". Before berth
  // serves there is nothing to finish: it exits (and its embedded database dies with it).
  let stoppingSince = 0;
  let stopGracefully: () => void = () => process.exit(1);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (!stoppingSince) {
        stoppingSince = Date.now();
        say(`${signal}: shutting down`);
        stopGracefully();
      } else if (Date.now() - stoppingSince > REPEATED_SIGNAL_MS) {
        say(`${signal} again: stopping without waiting`);
        process.exit(1);
      }
    });
  }

  const db = await openDatabase(config, say);
  const keyring = Keyring.open(config.jwt.keysDir);
  process.on('SIGHUP', () => {
    keyring.reload();
    say(`signing keys reloaded; signing with ${keyring.signingKey.kid}`);
  });

  // One hasher for the process: making one computes a dummy hash (the cost of a login).
  const hasher = await createPasswordHasher(config.argon2);
  const admin = await ensureAdmin(
    { prisma: db.prisma, hasher },
    { username: config.admin.username, password: config.admin.password, dataDir: config.dataDir },
  );

  const app = await buildApp(config, { prisma: db.prisma, keyring, hasher });
  // SIGHUP means "reload the signing keys" and SIGINT/SIGTERM are handled above;
  // close-with-grace covers the rest: fatal errors, other signals.
  const grace = closeWithGrace({ delay: 10_000, skip: ['SIGHUP', 'SIGINT', 'SIGTERM'] }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error');
    else if (signal) say(`${signal}: shutting down`);
    // In-flight requests finish; the jobs stop after their tick; VMs keep running.
    await app.close();
    await db.close();
    say('stopped');
  });
  stopGracefully = () => void grace.close();

  if (admin.generatedPassword) {
    say(`created admin "${admin.username}" with password: ${admin.generatedPassword}`);
    say(`(this password is shown once; it is also stored in ${admin.passwordFile})`);
  } else if (admin.created) {
    say(`created admin "${admin.username}" with the password from ADMIN_PASSWORD`);
  }
  const address = await app.listen({ port: config.port, host: config.host });
  // Last line on purpose: scripts and tests wait for it.
  say(`listening on ${address}  (API docs: ${address}/docs)`);
}

main().catch((err) => {
  console.error('[berth] failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
