// Webhooks' pure rules: which addresses a delivery may reach, which domain event makes which
// webhook event, and what comes after an attempt (the retry schedule, Retry-After, 410).
import { describe, expect, it } from 'vitest';
import type { DomainEvent } from '../../src/events/bus.js';
import { createAddressPolicy } from '../../src/modules/webhooks/address-policy.js';
import { afterAttempt, GONE_REASON, retryAfterMs } from '../../src/modules/webhooks/delivery.js';
import { occurrencesOf } from '../../src/modules/webhooks/event-map.js';

describe('the address policy', () => {
  const policy = createAddressPolicy([], () => ['198.51.7.7', '2a01:4f8::7']);

  it('refuses loopback, private, link-local, CGNAT, multicast, unspecified, reserved and translated addresses', () => {
    const refused: Record<string, string> = {
      '127.0.0.1': 'loopback',
      '127.9.9.9': 'loopback',
      '10.1.2.3': 'private',
      '172.16.0.1': 'private',
      '192.168.1.1': 'private',
      '169.254.169.254': 'linkLocal',
      '100.64.0.1': 'carrierGradeNat',
      '224.0.0.1': 'multicast',
      '0.0.0.0': 'unspecified',
      '255.255.255.255': 'broadcast',
      '192.0.2.1': 'reserved',
      '::1': 'loopback',
      '::': 'unspecified',
      'fe80::1': 'linkLocal',
      'fd00::1': 'uniqueLocal',
      'ff02::1': 'multicast',
      '64:ff9b::7f00:1': 'rfc6052',
      '2002:7f00:1::': '6to4',
      // IPv4 written as IPv6 is judged as the IPv4 address.
      '::ffff:127.0.0.1': 'loopback',
      '::ffff:10.0.0.1': 'private',
    };
    for (const [address, why] of Object.entries(refused)) expect(policy.refusal(address), address).toBe(why);
  });

  it("refuses this host's own addresses, and lets public unicast through", () => {
    expect(policy.refusal('198.51.7.7')).toBe("this host's own address");
    expect(policy.refusal('2a01:4f8::7')).toBe("this host's own address");
    expect(policy.refusal('93.184.215.14')).toBeNull();
    expect(policy.refusal('2606:4700:4700::1111')).toBeNull();
    expect(policy.refusal('not-an-ip')).toBe('not an IP address');
  });

  it('lets through what BERTH_WEBHOOK_ALLOW_HOSTS names, and only that', () => {
    const lab = createAddressPolicy(['127.0.0.1/32', '10.5.0.0/16', 'fd00:1::/64'], () => []);
    expect(lab.refusal('127.0.0.1')).toBeNull();
    expect(lab.refusal('::ffff:127.0.0.1')).toBeNull();
    expect(lab.refusal('127.0.0.2')).toBe('loopback');
    expect(lab.refusal('10.5.3.4')).toBeNull();
    expect(lab.refusal('10.6.0.1')).toBe('private');
    expect(lab.refusal('fd00:1::5')).toBeNull();
    expect(lab.refusal('fd00:2::5')).toBe('uniqueLocal');
  });
});

const at = new Date();
const changed = (from: string | null, to: string, reason: string | null = null, adminDetail: string | null = null) =>
  ({ type: 'reservation.changed', at, reservationId: 'r1', userId: 'u1', from, to, reason, adminDetail }) as DomainEvent;
const typesOf = (e: DomainEvent) => occurrencesOf(e).map((o) => o.type);

describe('which domain event makes which webhook event', () => {
  it('maps reservation status changes as SCHEDULING-API says', () => {
    expect(typesOf(changed(null, 'queued'))).toEqual(['reservation.queued']);
    expect(typesOf(changed(null, 'scheduled'))).toEqual(['reservation.scheduled']);
    expect(typesOf(changed(null, 'provisioning'))).toEqual([]);
    expect(typesOf(changed('queued', 'provisioning'))).toEqual([]);
    expect(typesOf(changed('provisioning', 'active'))).toEqual(['reservation.activated']);
    expect(typesOf(changed('provisioning', 'failed', 'machine unreachable', 'ssh: connect ECONNREFUSED'))).toEqual(['reservation.failed']);
    expect(typesOf(changed('scheduled', 'failed', 'a booked machine went away'))).toEqual(['reservation.failed']);
    // On the change to released, not to releasing.
    expect(typesOf(changed('active', 'releasing', 'released'))).toEqual([]);
    expect(typesOf(changed('releasing', 'released', 'released'))).toEqual(['reservation.released']);
    expect(typesOf(changed('releasing', 'released', 'released_by_admin'))).toEqual(['reservation.released']);
    expect(typesOf(changed('queued', 'released', 'cancelled'))).toEqual(['reservation.released']);
    expect(typesOf(changed('releasing', 'released', 'expired'))).toEqual(['reservation.expired']);
    expect(typesOf(changed('queued', 'released', 'expired'))).toEqual(['reservation.expired']);
  });

  it('carries the reason as the owner reads it, and the admin detail apart', () => {
    const [o] = occurrencesOf(changed('provisioning', 'failed', 'machine unreachable', 'ssh: connect ECONNREFUSED'));
    expect(o).toMatchObject({ type: 'reservation.failed', reservationId: 'r1', userId: 'u1', status: 'failed', reason: 'machine unreachable', adminDetail: 'ssh: connect ECONNREFUSED' });
  });

  it('maps extensions, coming ends, failed VMs and machines gone offline (one per machine)', () => {
    const expiresAt = new Date(Date.now() + 600_000);
    expect(occurrencesOf({ type: 'reservation.extended', at, reservationId: 'r1', userId: 'u1', expiresAt })).toEqual([
      expect.objectContaining({ type: 'reservation.extended', expiresAt }),
    ]);
    expect(occurrencesOf({ type: 'reservation.expiring', at, reservationId: 'r1', userId: null, expiresAt, minutesLeft: 10 })).toEqual([
      expect.objectContaining({ type: 'reservation.expiring', userId: null, minutesLeft: 10 }),
    ]);
    const vm = (change: 'failed' | 'booted') => ({ type: 'vm.changed', at, vmId: 'v1', machineId: 'm1', name: 'devbox-1', change, state: null }) as DomainEvent;
    expect(typesOf(vm('failed'))).toEqual(['vm.failed']);
    expect(typesOf(vm('booted'))).toEqual([]);
    const machine = (status: 'offline' | 'available') =>
      ({ type: 'machine.changed', at, machineIds: ['m1', 'm2'], transition: 'takeOfflineIfIdle', status, reservationId: null }) as DomainEvent;
    expect(occurrencesOf(machine('offline'))).toEqual([
      { type: 'machine.offline', machineId: 'm1', reservationId: null, transition: 'takeOfflineIfIdle' },
      { type: 'machine.offline', machineId: 'm2', reservationId: null, transition: 'takeOfflineIfIdle' },
    ]);
    expect(typesOf(machine('available'))).toEqual([]);
    expect(typesOf({ type: 'user.deleted', at, userId: 'u1' })).toEqual([]);
  });
});

describe('after an attempt', () => {
  const schedule = [5_000, 300_000, 1_800_000];
  const now = 1_000_000;

  it('a 2xx is delivered; anything else waits for the next step of the schedule, then fails', () => {
    expect(afterAttempt({ statusCode: 204, retryAfter: null }, 0, schedule, now)).toEqual({ status: 'delivered' });
    expect(afterAttempt({ statusCode: 500, retryAfter: null }, 0, schedule, now)).toEqual({ status: 'pending', nextAttemptAt: new Date(now + 5_000), retries: 1 });
    expect(afterAttempt({ statusCode: null, retryAfter: null }, 2, schedule, now)).toEqual({ status: 'pending', nextAttemptAt: new Date(now + 1_800_000), retries: 3 });
    // A redirect is an answer, and not a success.
    expect(afterAttempt({ statusCode: 302, retryAfter: null }, 1, schedule, now)).toEqual({ status: 'pending', nextAttemptAt: new Date(now + 300_000), retries: 2 });
    expect(afterAttempt({ statusCode: 500, retryAfter: null }, 3, schedule, now)).toEqual({ status: 'failed', disable: null });
  });

  it('410 Gone fails it at once and disables the endpoint', () => {
    expect(afterAttempt({ statusCode: 410, retryAfter: null }, 0, schedule, now)).toEqual({ status: 'failed', disable: GONE_REASON });
  });

  it('honours Retry-After when it asks for longer than the schedule (seconds or a date, within a day)', () => {
    expect(afterAttempt({ statusCode: 429, retryAfter: '60' }, 0, schedule, now)).toMatchObject({ nextAttemptAt: new Date(now + 60_000) });
    expect(afterAttempt({ statusCode: 503, retryAfter: '1' }, 0, schedule, now)).toMatchObject({ nextAttemptAt: new Date(now + 5_000) });
    expect(retryAfterMs(new Date(now + 120_000).toUTCString(), now)).toBe(120_000);
    expect(retryAfterMs('999999999', now)).toBe(24 * 3600_000);
    expect(retryAfterMs('soon', now)).toBeNull();
    expect(retryAfterMs(null, now)).toBeNull();
  });
});
