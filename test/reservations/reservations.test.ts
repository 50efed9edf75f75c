// Reservations end to end on real sshd machines: the account really works (password,
// key, sudo) and really disappears on release.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, userSession, type Session } from '../helpers/app.js';
import { accountExists, createPool, type Pool } from '../helpers/pool.js';
import { sshRun } from '../helpers/ssh-machines.js';
import { generateSshKeyPair } from '../../src/infra/ssh.js';

let pool: Pool;
let alice: Session;
let bob: Session;
const userKey = generateSshKeyPair();

beforeAll(async () => {
  pool = await createPool(4, { BERTH_RESERVATION_MAX_MINUTES: '120', BERTH_RESERVATION_MAX_TOTAL_MINUTES: '180' }, 'res');
  alice = await userSession(pool.t, 'alice');
  bob = await userSession(pool.t, 'bob');
  // The servers give sudo (an admin turns it on; the release test turns it off again), the
  // last machine gives none and carries a tag, for the filter tests.
  for (const m of pool.machines.slice(0, 3)) {
    await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${m.name}`, headers: pool.admin.auth, payload: { allow_sudo: true } });
  }
  await pool.t.app.inject({
    method: 'PATCH',
    url: `/v1/machines/${pool.machines[3]!.name}`,
    headers: pool.admin.auth,
    payload: { allow_sudo: false, type: 'gpu', tags: { gpu: 'a100' } },
  });
});
afterAll(() => pool.close());

const reserve = (s: Session, payload: object, headers: Record<string, string> = {}) =>
  pool.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: { ...s.auth, ...headers }, payload });
const release = (s: Session, id: string) => pool.t.app.inject({ method: 'DELETE', url: `/v1/reservations/${id}`, headers: s.auth });
const byName = (name: string) => pool.machines.find((m) => m.name === name)!;

describe('a reservation of two machines', () => {
  let res: any;

  it('creates a working account on both, with a generated password shown once', async () => {
    const r = await reserve(alice, { count: 2, duration_minutes: 30, ssh_public_key: userKey.public, type: 'server' });
    expect(r.statusCode).toBe(201);
    res = json(r);
    expect(res).toMatchObject({ status: 'active', owner: 'alice', account: { username: 'alice' }, duration_minutes: 30 });
    expect(res.machines).toHaveLength(2);
    // With a key given and no password, berth makes no password.
    expect(res.account.password).toBeUndefined();
    expect(res.seconds_remaining).toBeGreaterThan(29 * 60);
    for (const { name, host, port } of res.machines) {
      const r1 = await sshRun({ host, port, username: 'alice', privateKey: userKey.private }, 'id -un && sudo -n true && echo sudo-ok');
      expect(r1.stdout.split('\n')).toEqual(['alice', 'sudo-ok']);
      const m = byName(name);
      expect(await accountExists(m, 'alice')).toBe(true);
    }
    const pool2 = json(await pool.t.app.inject({ method: 'GET', url: '/v1/pool', headers: alice.auth }));
    expect(pool2.reserved).toBe(2);
  });

  it('is listed with seconds_remaining, visible to its owner and admins only', async () => {
    const list = json(await pool.t.app.inject({ method: 'GET', url: '/v1/reservations', headers: alice.auth }));
    expect(list.items.map((x: { id: string }) => x.id)).toContain(res.id);
    expect(list.items[0].seconds_remaining).toBeGreaterThan(0);
    expect(list.items[0].account.password).toBeUndefined();
    expect(json(await pool.t.app.inject({ method: 'GET', url: '/v1/reservations', headers: bob.auth })).items).toEqual([]);
    expect((await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${res.id}`, headers: bob.auth })).statusCode).toBe(404);
    expect((await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${res.id}`, headers: pool.admin.auth })).statusCode).toBe(200);
    const all = json(await pool.t.app.inject({ method: 'GET', url: '/v1/reservations?all=true', headers: pool.admin.auth }));
    expect(all.items.map((x: { id: string }) => x.id)).toContain(res.id);
    expect((await pool.t.app.inject({ method: 'GET', url: '/v1/reservations?all=true', headers: alice.auth })).statusCode).toBe(403);
    // alice has exactly this one reservation so far: the filter must find it and nothing else.
    const ofAlice = json(await pool.t.app.inject({ method: 'GET', url: '/v1/reservations?user=alice', headers: pool.admin.auth }));
    expect(ofAlice.items.map((x: { id: string; owner: string }) => [x.id, x.owner])).toEqual([[res.id, 'alice']]);
    expect(json(await pool.t.app.inject({ method: 'GET', url: '/v1/reservations?user=bob', headers: pool.admin.auth })).items).toEqual([]);
  });

  it('?user= names the caller’s own list for a user; anyone else’s is a 403 problem, and no list without a token', async () => {
    const list = (s: Session | null, user: string) =>
      pool.t.app.inject({ method: 'GET', url: `/v1/reservations?user=${user}`, headers: s ? s.auth : {} });
    const own = await list(alice, 'alice');
    expect(own.statusCode).toBe(200);
    expect(json(own).items.map((x: { id: string }) => x.id)).toEqual([res.id]);
    const ofOther = await list(bob, 'alice');
    expect(ofOther.statusCode).toBe(403);
    expect(ofOther.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(json(ofOther)).toMatchObject({ status: 403, code: 'admin_required' });
    expect(JSON.stringify(json(ofOther))).not.toContain(res.id);
    // A name nobody has is still someone else's: refused, not an empty list that says "no such user".
    expect((await list(bob, 'nobody')).statusCode).toBe(403);
    const anonymous = await list(null, 'alice');
    expect(anonymous.statusCode).toBe(401);
    expect(json(anonymous)).toMatchObject({ status: 401 });
  });

  it('extends within the policy and refuses past the cap (422 exceeds_max_duration)', async () => {
    const ok = await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${res.id}/extend`, headers: alice.auth, payload: { minutes: 60 } });
    expect(ok.statusCode).toBe(200);
    expect(new Date(json(ok).expires_at).getTime() - new Date(res.expires_at).getTime()).toBe(60 * 60_000);
    const tooFar = await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${res.id}/extend`, headers: alice.auth, payload: { minutes: 120 } });
    expect(json(tooFar)).toMatchObject({ status: 422, code: 'exceeds_max_duration' });
    expect((await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${res.id}/extend`, headers: bob.auth, payload: { minutes: 1 } })).statusCode).toBe(404);
  });

  it('release kills the account’s processes, removes it and its home, and keeps the machines out until reprovisioned', async () => {
    const [first] = res.machines;
    // A process left running by the user must not survive the release.
    await sshRun({ host: first.host, port: first.port, username: 'alice', privateKey: userKey.private }, 'nohup sleep 600 >/dev/null 2>&1 &');
    const m = byName(first.name);
    expect((await m.sh('pgrep -u alice')).code).toBe(0);

    expect((await release(bob, res.id)).statusCode).toBe(404);
    const out = await release(alice, res.id);
    expect(out.statusCode).toBe(200);
    expect(json(out)).toMatchObject({ status: 'released', release_reason: 'released', seconds_remaining: 0 });
    for (const { name } of res.machines) {
      const machine = byName(name);
      expect(await accountExists(machine, 'alice')).toBe(false);
      expect((await machine.sh('test -e /home/alice')).code).not.toBe(0);
      expect((await machine.sh('ls /etc/sudoers.d')).out).not.toContain('berth-alice');
    }
    expect((await m.sh('ps -eo user= | grep -c "^alice" || true')).out.trim()).toBe('0');
    // alice had sudo: root may have left anything, so the machines wait for an admin.
    const waiting = json(await pool.t.app.inject({ method: 'GET', url: '/v1/machines?status=needs_reprovision', headers: alice.auth }));
    expect(waiting.items.map((x: { name: string }) => x.name).sort()).toEqual(res.machines.map((x: { name: string }) => x.name).sort());
    for (const { name } of res.machines) {
      expect((await pool.t.app.inject({ method: 'POST', url: `/v1/machines/${name}/reprovisioned`, headers: pool.admin.auth })).statusCode).toBe(200);
    }
    for (const m of pool.machines.slice(0, 3)) {
      await pool.t.app.inject({ method: 'PATCH', url: `/v1/machines/${m.name}`, headers: pool.admin.auth, payload: { allow_sudo: false } });
    }
    const machines = json(await pool.t.app.inject({ method: 'GET', url: '/v1/machines?status=available', headers: alice.auth }));
    expect(machines.items).toHaveLength(4);
    // Releasing again changes nothing.
    expect(json(await release(alice, res.id)).status).toBe('released');
  });
});

describe('an account whose user tampers with it', () => {
  it('is removed on release even after its GECOS marker was rewritten (ownership is kept where only root writes)', async () => {
    const r = json(await reserve(alice, { count: 1, ssh_public_key: userKey.public }));
    const m = byName(r.machines[0].name);
    // What `chfn` or `sudo usermod -c` lets the user do to their own account.
    expect((await m.sh('usermod -c "not berth anymore" alice')).code).toBe(0);
    expect(json(await release(alice, r.id))).toMatchObject({ status: 'released' });
    expect(await accountExists(m, 'alice')).toBe(false);
    expect(json(await pool.t.app.inject({ method: 'GET', url: `/v1/machines/${m.name}`, headers: alice.auth })).status).toBe('available');
  });
});

describe('choosing machines', () => {
  it('reserves named machines, with a password given by the user; no sudo where the machine says so', async () => {
    const gpu = pool.machines[3]!;
    const r = json(await reserve(alice, { machines: [gpu.name], username: 'trainer', password: 'my own passphrase 1' }));
    expect(r).toMatchObject({ status: 'active', account: { username: 'trainer' } });
    expect(r.account.password).toBeUndefined(); // the user knows it
    const login = await sshRun({ host: gpu.host, port: gpu.port, username: 'trainer', password: 'my own passphrase 1' }, 'id -un; sudo -n true; echo "sudo=$?"');
    expect(login.stdout).toContain('trainer');
    expect(login.stdout).toContain('sudo=1');
    // berth hashed it (SHA-512 crypt): the machine never saw it in clear.
    expect((await gpu.sh('getent shadow trainer | cut -d: -f2')).out.trim()).toMatch(/^\$6\$/);
    await release(alice, r.id);
  });

  it('generates a strong password when neither password nor key is given, and it logs in', async () => {
    const r = json(await reserve(bob, { count: 1, type: 'gpu', tags: { gpu: 'a100' } }));
    expect(r.machines[0].name).toBe(pool.machines[3]!.name);
    expect(r.account.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const { host, port } = r.machines[0];
    expect((await sshRun({ host, port, username: 'bob', password: r.account.password }, 'id -un')).stdout).toBe('bob');
    // Hashed by berth (SHA-512 crypt: 144 random bits need no memory-hard hash), set as it is.
    expect((await pool.machines[3]!.sh('getent shadow bob | cut -d: -f2')).out.trim()).toMatch(/^\$6\$[./A-Za-z0-9]{16}\$[./A-Za-z0-9]{86}$/);
    await release(bob, r.id);
  });

  it('answers 409 insufficient_capacity with the number available, claiming nothing', async () => {
    const r = await reserve(alice, { count: 5 });
    expect(json(r)).toMatchObject({ status: 409, code: 'insufficient_capacity', available: 4, requested: 5 });
    const tagged = await reserve(alice, { count: 2, tags: { gpu: 'a100' } });
    expect(json(tagged)).toMatchObject({ status: 409, available: 1 });
    expect(json(await pool.t.app.inject({ method: 'GET', url: '/v1/pool', headers: alice.auth })).available).toBe(4);
  });

  it('answers 404 for an unknown named machine and 400 for contradictory requests', async () => {
    expect(json(await reserve(alice, { machines: ['no-such-machine'] }))).toMatchObject({ status: 404, code: 'machine_not_found' });
    expect((await reserve(alice, { count: 1, machines: [pool.machines[0]!.name] })).statusCode).toBe(400);
    expect((await reserve(alice, { machines: [pool.machines[0]!.name, pool.machines[0]!.name] })).statusCode).toBe(400);
    expect((await reserve(alice, { count: 1, username: 'Bad Name' })).statusCode).toBe(400);
    expect((await reserve(alice, { count: 1, ssh_public_key: 'not a key' })).statusCode).toBe(400);
    expect((await reserve(alice, { count: 1, password: 'line\nbreak' })).statusCode).toBe(400);
  });

  it('refuses a credential too large to store with a 400, not a 500', async () => {
    const huge = 'x'.repeat(8190);
    const res = await pool.t.app.inject({
      method: 'POST', url: '/v1/machines', headers: pool.admin.auth,
      payload: { name: 'huge-key', host: '127.0.0.1', username: 'root', private_key: huge },
    });
    expect(res.statusCode).toBe(400);
    const wide = await pool.t.app.inject({
      method: 'POST', url: '/v1/machines', headers: pool.admin.auth,
      payload: { name: 'wide-key', host: '127.0.0.1', username: 'root', password: 'é'.repeat(4100) },
    });
    expect(wide.statusCode).toBe(400);
  });

  it('refuses system account names and durations past the policy (422)', async () => {
    expect(json(await reserve(alice, { count: 1, username: 'sshd' }))).toMatchObject({ status: 422, code: 'account_name_reserved' });
    expect(json(await reserve(alice, { count: 1, duration_minutes: 121 }))).toMatchObject({ status: 422, code: 'exceeds_max_duration' });
  });
});

describe('Idempotency-Key', () => {
  it('returns the same reservation for the same key and body, and 422 for another body', async () => {
    const first = await reserve(alice, { count: 1 }, { 'idempotency-key': 'job-42' });
    expect(first.statusCode).toBe(201);
    const again = await reserve(alice, { count: 1 }, { 'idempotency-key': 'job-42' });
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(json(again).id).toBe(json(first).id);
    expect(json(again).account.password).toBeUndefined(); // shown once, on the first answer
    const other = await reserve(alice, { count: 2 }, { 'idempotency-key': 'job-42' });
    expect(json(other)).toMatchObject({ status: 422, code: 'idempotency_key_reused' });
    // A difference deep inside the body counts too.
    const tagged = await reserve(alice, { count: 1, tags: { gpu: 'a100' } }, { 'idempotency-key': 'job-43' });
    expect(tagged.statusCode).toBe(201);
    const retagged = await reserve(alice, { count: 1, tags: { gpu: 'h100' } }, { 'idempotency-key': 'job-43' });
    expect(json(retagged)).toMatchObject({ status: 422, code: 'idempotency_key_reused' });
    await release(alice, json(tagged).id);
    // The stored fingerprint of a body is keyed: it is not a bare hash of a password.
    const row = await pool.t.prisma.reservation.findFirstOrThrow({ where: { idempotencyKey: 'job-42' } });
    const { createHash } = await import('node:crypto');
    expect(row.requestHash).not.toBe(createHash('sha256').update('{"count":1}').digest('hex'));
    // Another user's identical key is a different request.
    const bobs = await reserve(bob, { count: 1 }, { 'idempotency-key': 'job-42' });
    expect(json(bobs).id).not.toBe(json(first).id);
    expect(json(await pool.t.app.inject({ method: 'GET', url: '/v1/pool', headers: alice.auth })).reserved).toBe(2);
    await release(alice, json(first).id);
    await release(bob, json(bobs).id);
  });
});

describe('extending a reservation that has run out', () => {
  it('is refused (409 reservation_expired): expiry is not undone by a late extension', async () => {
    const r = json(await reserve(alice, { count: 1 }));
    await pool.t.prisma.reservation.update({ where: { id: r.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const late = await pool.t.app.inject({ method: 'POST', url: `/v1/reservations/${r.id}/extend`, headers: alice.auth, payload: { minutes: 10 } });
    expect(json(late)).toMatchObject({ status: 409, code: 'reservation_expired' });
    await release(alice, r.id);
  });
});

describe('a failed reservation replayed by its Idempotency-Key', () => {
  it('answers the same failure, not a 201', async () => {
    const victim = pool.machines[1]!;
    await victim.sh('useradd --create-home dave');
    const first = await reserve(alice, { machines: [victim.name], username: 'dave' }, { 'idempotency-key': 'fails-once' });
    expect(first.statusCode).toBe(502);
    const again = await reserve(alice, { machines: [victim.name], username: 'dave' }, { 'idempotency-key': 'fails-once' });
    expect(json(again)).toMatchObject({ status: 502, code: 'provisioning_failed', reservation_id: json(first).reservation_id });
    await victim.sh('userdel -r dave');
  });
});

describe('a machine already holding an account of that name', () => {
  it('fails the reservation naming the machine (502), leaves that account alone, and frees the machines', async () => {
    const victim = pool.machines[0]!;
    await victim.sh('useradd --create-home carol && echo carol-owns-this > /home/carol/file');
    const r = await reserve(alice, { machines: pool.machines.slice(0, 3).map((m) => m.name), username: 'carol' });
    expect(r.statusCode).toBe(502);
    const body = json(r);
    expect(body).toMatchObject({ code: 'provisioning_failed', machine: victim.name });
    // The machine's own words are for admins (below); the user reads which machine failed.
    expect(body.detail).not.toContain('already exists');
    // The pre-existing account is untouched; the two accounts berth made are gone.
    expect((await victim.sh('cat /home/carol/file')).out.trim()).toBe('carol-owns-this');
    for (const m of pool.machines.slice(1, 3)) expect(await accountExists(m, 'carol')).toBe(false);
    const failed = json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${body.reservation_id}`, headers: alice.auth }));
    expect(failed).toMatchObject({ status: 'failed' });
    expect(failed.failure_reason).toContain(victim.name);
    const asAdmin = json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${body.reservation_id}`, headers: pool.admin.auth }));
    expect(asAdmin.failure_reason).toContain('already exists');
    expect(json(await pool.t.app.inject({ method: 'GET', url: '/v1/pool', headers: alice.auth })).available).toBe(4);
  });
});

describe('policy: machines per user', () => {
  it('refuses to hold more than the per-user maximum', async () => {
    const capped = await createPool(2, { BERTH_RESERVATION_MAX_MACHINES_PER_USER: '1' }, 'cap');
    try {
      const u = await userSession(capped.t, 'dana');
      const first = await capped.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: u.auth, payload: { count: 1 } });
      expect(first.statusCode).toBe(201);
      const second = await capped.t.app.inject({ method: 'POST', url: '/v1/reservations', headers: u.auth, payload: { count: 1 } });
      expect(json(second)).toMatchObject({ status: 422, code: 'machine_limit_exceeded' });
    } finally {
      await capped.close();
    }
  });
});

describe('deleting a user', () => {
  it('releases their reservations: the accounts are removed', async () => {
    const erin = await userSession(pool.t, 'erin');
    const r = json(await reserve(erin, { count: 1 }));
    const m = byName(r.machines[0].name);
    expect(await accountExists(m, 'erin')).toBe(true);
    expect((await pool.t.app.inject({ method: 'DELETE', url: `/v1/users/${erin.userId}`, headers: pool.admin.auth })).statusCode).toBe(204);
    expect(await accountExists(m, 'erin')).toBe(false);
    const after = json(await pool.t.app.inject({ method: 'GET', url: `/v1/reservations/${r.id}`, headers: pool.admin.auth }));
    expect(after).toMatchObject({ status: 'released', release_reason: 'released_by_admin' });
  });
});
