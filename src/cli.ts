// Operator commands:  npm run migrate   |   npm run keys:rotate
import { loadConfig } from './config.js';
import { openDatabase } from './infra/open-database.js';
import { Keyring, SIGNING_RESCAN_MS } from './modules/identity/keyring.js';

const say = (msg: string) => console.log(`[berth] ${msg}`);

const commands: Record<string, () => Promise<void>> = {
  /** Applies pending migrations (the server also does this at start-up). */
  async migrate() {
    const db = await openDatabase(loadConfig(), say);
    await db.close();
  },
  /**
   * Adds a new signing key; running servers start signing with it when they next meet a
   * token it signed, or at once on SIGHUP. Keys retired longer ago than the longest
   * access-token lifetime are deleted.
   */
  async 'rotate-keys'() {
    const config = loadConfig();
    const ring = Keyring.open(config.jwt.keysDir);
    // Retire a key once every process signs with its successor and its last token expired.
    const { kid, pruned } = ring.rotate(config.jwt.accessTtlSeconds + (2 * SIGNING_RESCAN_MS) / 1000);
    say(`new signing key ${kid} in ${config.jwt.keysDir}`);
    if (pruned.length) say(`removed retired keys: ${pruned.join(', ')}`);
    say(`running berth processes sign with it within ${SIGNING_RESCAN_MS / 1000} s (or at once on SIGHUP)`);
  },
};

const name = process.argv[2] ?? '';
const command = commands[name];
if (!command) {
  console.error(`usage: node dist/cli.js <${Object.keys(commands).join('|')}>   (npm run migrate, npm run keys:rotate)`);
  process.exit(64);
}
command().catch((err) => {
  console.error(`[berth] ${name} failed:`, err instanceof Error ? err.message : err);
  process.exit(1);
});
