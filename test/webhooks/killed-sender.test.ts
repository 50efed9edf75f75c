// A berth process killed (SIGKILL) while it waits for a webhook's answer leaves the delivery
// under its lease; once the lease runs out, another berth process on the same database sends
// it again, with the same webhook-id, and records it delivered. Two real OS processes, a real
// receiver, a real event (an admin's check of an unreachable machine takes it offline).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { createMigratedDatabase } from '../helpers/db.js';
import { callJson, startServer, type ServerProcess } from '../helpers/server-process.js';
import { startReceiver, type Receiver } from '../helpers/webhook-receiver.js';

const PASSWORD = 'killed sender admin passphrase';
let db: Awaited<ReturnType<typeof createMigratedDatabase>>;
let receiver: Receiver;
const servers: ServerProcess[] = [];
const dirs: string[] = [];
const tempDir = (prefix: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

beforeAll(async () => {
  [db, receiver] = await Promise.all([createMigratedDatabase('hookkill'), startReceiver()]);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await receiver?.close();
  await db?.drop();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('a berth killed mid-send', () => {
  it('leaves the delivery to another process once its lease runs out: sent again with the same webhook-id', { timeout: 240_000 }, async () => {
    const common = {
      DATABASE_URL: `mysql://root@localhost/${db.target.database}?socket=${encodeURIComponent(db.target.socketPath!)}`,
      BERTH_JWT_KEYS_DIR: tempDir('berth-hookkill-keys-'),
      BERTH_SECRET_KEY: randomBytes(32).toString('base64'),
      ADMIN_PASSWORD: PASSWORD,
      BERTH_WEBHOOK_ALLOW_HOSTS: '127.0.0.1/32',
      // The lease is this plus 30 s: the second process takes over ~32 s after the first claimed.
      BERTH_WEBHOOK_TIMEOUT_SECONDS: '2',
      BERTH_VM_ACCEL: 'tcg',
    };
    const first = await startServer({ ...common, BERTH_DATA_DIR: tempDir('berth-hookkill-a-'), BERTH_NODE_NAME: 'berth-a' }, 120_000);
    servers.push(first);
    onTestFailed(() => console.error(`berth-a:\n${first.output()}\nberth-b:\n${servers[1]?.output() ?? ''}`));
    const admin = (await callJson(first.url, 'POST', '/v1/token', undefined, { username: 'admin', password: PASSWORD })).body.access_token as string;

    // The first request is never answered: the first process is killed while it waits.
    let killedAt = 0;
    receiver.answer((n) => {
      if (n > 0) return { status: 204 };
      killedAt = Date.now();
      first.child.kill('SIGKILL');
      return null;
    });
    const hook = await callJson(first.url, 'POST', '/v1/webhooks', admin, { url: receiver.url(), events: ['machine.offline'] });
    expect(hook.status).toBe(201);
    expect((await callJson(first.url, 'POST', '/v1/machines', admin, { name: 'dark-1', host: '127.0.0.1', port: 1, username: 'root', password: 'unused', type: 'spare' })).status).toBe(201);
    // The check takes the machine offline; the webhook may reach the receiver (which kills the
    // process) before the check's own answer has left it, so that answer may never come.
    const check = callJson(first.url, 'POST', '/v1/machines/dark-1/check', admin).catch(() => null);
    const [sent] = await receiver.waitFor(1, 10_000);
    const checked = await check;
    if (checked) expect(checked.body).toMatchObject({ reachable: false, status: 'offline' });
    await expect.poll(() => first.child.exitCode !== null || first.child.signalCode !== null, { timeout: 10_000 }).toBe(true);

    const second = await startServer({ ...common, BERTH_DATA_DIR: tempDir('berth-hookkill-b-'), BERTH_NODE_NAME: 'berth-b' }, 120_000);
    servers.push(second);
    const [, again] = await receiver.waitFor(2, 90_000);
    expect(again!.headers['webhook-id']).toBe(sent!.headers['webhook-id']);
    expect(again!.body).toBe(sent!.body);
    // Not before the lease ran out (claimed just before the first request arrived).
    expect(again!.at - killedAt).toBeGreaterThanOrEqual(31_000);
    const admin2 = (await callJson(second.url, 'POST', '/v1/token', undefined, { username: 'admin', password: PASSWORD })).body.access_token as string;
    await expect
      .poll(async () => (await callJson(second.url, 'GET', `/v1/webhooks/${hook.body.id}/deliveries`, admin2)).body.items.map((d: any) => [d.status, d.attempt_count]), { timeout: 10_000 })
      .toEqual([['delivered', 1]]);
    expect(receiver.received).toHaveLength(2);
  });
});
