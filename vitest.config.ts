import { defineConfig } from 'vitest/config';

// Two tiers. `unit`: pure code (configuration, cursors, the guest init, host keys,
// canonical JSON, problem rendering, bounded parsing) — seconds, no services
// (`npm run test:unit`). `integration`: everything else, against the real MariaDB, sshd,
// Docker, QEMU and Caddy the global setup starts. `npm test` runs both.
export default defineConfig({
  test: {
    // A real database and argon2 make some tests take a few seconds.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['test/unit/**'],
          // Each file gets its own database on the shared per-run MariaDB.
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
    ],
  },
});
