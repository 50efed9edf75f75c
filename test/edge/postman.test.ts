// The committed Postman collection, run by newman through Caddy over HTTPS (Caddy's root
// trusted with sslExtraCaCerts) against a real berth with a real sshd machine: the
// Walkthrough folder is one user's whole session, each step asserting its status and what
// the answer says, and every answer checked against its documented shape.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD } from '../helpers/app.js';
import { startCaddyFor, type Caddy } from '../helpers/caddy.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';

const COLLECTION = path.resolve('clients/postman/berth.postman_collection.json');
const ENVIRONMENT = path.resolve('clients/postman/berth.postman_environment.json');

interface Execution {
  item: { name: string };
  response?: { code: number };
  requestError?: { message: string };
  assertions?: { assertion: string; error?: { message: string } }[];
}
interface Summary {
  run: { executions: Execution[]; failures: { error: { message: string; test?: string }; source?: { name?: string } }[] };
}
const newman = createRequire(import.meta.url)('newman') as { run(options: object, cb: (err: Error | null, summary: Summary) => void): void };

let pool: Pool;
let caddy: Caddy;
beforeAll(async () => {
  pool = await createPool(1, { BERTH_TRUST_PROXY: '127.0.0.1' }, 'pm');
  caddy = await startCaddyFor(pool.t.app);
});
afterAll(async () => {
  await caddy?.stop();
  await pool?.close();
});

function run(folder: string | string[], options: { trustCaddy?: boolean; username?: string } = {}): Promise<Summary> {
  const { trustCaddy = true, username = 'postman-user' } = options;
  return new Promise((resolve, reject) =>
    newman.run(
      {
        collection: JSON.parse(fs.readFileSync(COLLECTION, 'utf8')),
        environment: JSON.parse(fs.readFileSync(ENVIRONMENT, 'utf8')),
        envVar: [
          { key: 'baseUrl', value: caddy.url },
          { key: 'username', value: username },
          { key: 'password', value: PASSWORD },
        ],
        folder,
        insecure: false,
        ...(trustCaddy && { sslExtraCaCerts: caddy.rootPath }),
        reporters: [],
      },
      (err, summary) => (err ? reject(err) : resolve(summary)),
    ),
  );
}

const failuresOf = (s: Summary) => s.run.failures.map((f) => `${f.source?.name}: ${f.error.test ?? ''} ${f.error.message}`);

describe('the Postman collection through Caddy', () => {
  it("runs the Walkthrough: one user's session, every step and every answer checked", async () => {
    const summary = await run('Walkthrough');
    expect(failuresOf(summary)).toEqual([]);
    const steps = summary.run.executions.map((e) => [e.item.name, e.response?.code ?? e.requestError?.message]);
    expect(steps).toEqual([
      ['Register', 201],
      ['Log in (JSON)', 200],
      ['Log in (HTTP Basic)', 200],
      ['Who am I', 200],
      ['Refresh the tokens', 200],
      ['Verify the access token', 200],
      ['Available machines', 200],
      ['The pool', 200],
      ['Reserve a machine', 201],
      ['Read the reservation', 200],
      ['Extend the reservation', 200],
      ['Release the reservation', 200],
      ['Images', 200],
      ['Log out', 204],
      ['The token after logging out', 401],
    ]);
    // Every step asserted something of its own beyond the documented-status check.
    for (const e of summary.run.executions) expect(e.assertions?.length, e.item.name).toBeGreaterThanOrEqual(2);
    // The reservation was real: berth made the account on the machine, and the release removed it.
    const reservation = await pool.t.prisma.reservation.findFirstOrThrow({ where: { accountUsername: 'postman-user' } });
    expect(reservation.status).toBe('released');
    expect(await accountExists(pool.machines[0]!, 'postman-user')).toBe(false);
  });

  it('works folder by folder as a person uses it: the public requests of the service folder', async () => {
    const summary = await run('service');
    expect(failuresOf(summary)).toEqual([]);
    expect(summary.run.executions.map((e) => e.response?.code)).toEqual([200, 200, 200]);
  });

  it('does not connect without Caddy’s root trusted: TLS is verified', async () => {
    const summary = await run('service', { trustCaddy: false });
    expect(summary.run.executions.every((e) => e.response === undefined)).toBe(true);
    expect(failuresOf(summary).join('\n')).toMatch(/certificate/i);
  });
});
