// A tenant with sudo on a reserved machine owns it for a while, root included. Whatever
// they leave behind, berth keeps running: a machine that floods every SSH command with
// output fails that command, goes offline with the reason, and stays a machine to clean.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, json, login, userSession, type Session } from '../helpers/app.js';
import { createPool, type Pool } from '../helpers/pool.js';
import { sshRun } from '../helpers/ssh-machines.js';

let pool: Pool;
let alice: Session;
beforeAll(async () => {
  pool = await createPool(1, { BERTH_RESERVATION_LEASE_SECONDS: '2' }, 'tenant');
  await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${pool.machines[0]!.name}`, headers: pool.admin.auth, payload: { allow_sudo: true } });
  alice = await userSession(pool.t, 'alice');
});
afterAll(() => pool.close());

describe('a tenant who makes every SSH command print hundreds of MB', () => {
  it('fails the release cleanly, keeps the machine out of the pool, and survives a restart', async () => {
    const m = pool.machines[0]!;
    const res = await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: alice.auth, payload: { count: 1, password: 'tenant password 1' } });
    expect(res.statusCode, res.body).toBe(201);
    const reservation = json(res);
    // As the tenant, with the sudo berth granted: root's ~/.ssh/rc runs before every command berth sends.
    const planted = await sshRun(
      { host: m.host, port: m.port, username: 'alice', password: 'tenant password 1' },
      `sudo -n sh -c 'mkdir -p /root/.ssh && echo "head -c 600000000 /dev/zero" > /root/.ssh/rc' && echo planted`,
    );
    expect(planted.stdout).toBe('planted');

    const released = await pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${reservation.id}`, headers: alice.auth });
    expect(released.statusCode, released.body).toBe(200);
    expect(json(released).status).toBe('released');
    const machine = json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${m.name}`, headers: pool.admin.auth }));
    expect(machine.status).toBe('offline');
    expect(machine.status_reason).toMatch(/cleanup pending.*printed more than/);
    expect((await pool.t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);

    // The job retries the cleanup; so does a restarted berth on the same database: each
    // attempt fails the same clean way instead of taking the process down.
    await pool.t.prisma.machine.update({ where: { name: m.name }, data: { lastCheckedAt: null } });
    expect(await pool.t.app.reservationJob.tick()).not.toBeNull();
    const restarted = await createTestApp({}, { shareWith: pool.t });
    try {
      await pool.t.prisma.machine.update({ where: { name: m.name }, data: { lastCheckedAt: null } });
      expect(await restarted.app.reservationJob.tick()).not.toBeNull();
      expect((await restarted.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await restarted.app.close();
    }
    expect((await pool.t.prisma.machine.findUniqueOrThrow({ where: { name: m.name } })).status).toBe('offline');

    // Once the machine's owner removes the trap, a check cleans up; the machine waits to be
    // reprovisioned (alice was root on it) until the admin says it is.
    await m.sh('rm -f /root/.ssh/rc');
    const check = json(await pool.t.app.inject({ method: 'POST', url: `/v1/machines/${m.name}/check`, headers: pool.admin.auth }));
    expect(check).toMatchObject({ reachable: true, status: 'needs_reprovision' });
    expect((await m.sh('getent passwd alice')).code).not.toBe(0);
    const cleared = await pool.t.app.inject({ method: 'POST', url: `/v1/machines/${m.name}/reprovisioned`, headers: pool.admin.auth });
    expect(json(cleared).status).toBe('available');
    // And alice may reserve again.
    const again = await login(pool.t.app, 'alice');
    expect((await pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: again.auth, payload: { count: 1 } })).statusCode).toBe(201);
  });
});
