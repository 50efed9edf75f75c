// How the command line shows queued and booked reservations, on answers shaped as
// scheduling's API gives them (queue_position, estimated_start, start_at, wait_until): the
// table grows their columns only when such a row is in it, and a generated password that
// berth reveals once reaches the person whichever command read it.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Reservation } from '../../clients/cli/src/http/reservation.js';
import { describeQueued, describeReservation, describeScheduled, passwordNotice, reservationsTable } from '../../clients/cli/src/output/reservations.js';

beforeAll(() => {
  process.env.TZ = 'UTC'; // times print in the local zone
});

const base: Reservation = {
  id: '3f1e6a4b-8c2d-4e5f-9a0b-1c2d3e4f5a6b',
  status: 'active',
  owner: 'alice',
  account: { username: 'alice' },
  machines: [{ name: 'node-1', host: '10.0.0.21', port: 22, host_key: null }],
  known_hosts: '',
  duration_minutes: 60,
  created_at: '2026-12-08T09:00:00.000Z',
  activated_at: '2026-12-08T09:00:01.000Z',
  expires_at: '2026-12-08T10:00:01.000Z',
  max_expires_at: '2026-12-09T09:00:00.000Z',
  seconds_remaining: 1800,
  released_at: null,
  release_reason: null,
  failure_reason: null,
  start_at: null,
  wait_until: null,
  queue_position: null,
  estimated_start: null,
};
const queued: Reservation = {
  ...base,
  id: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  status: 'queued',
  machines: [],
  activated_at: null,
  expires_at: null,
  seconds_remaining: 0,
  wait_until: '2026-12-08T10:00:00.000Z',
  queue_position: 2,
  estimated_start: '2026-12-08T09:45:00.000Z',
};
const booked: Reservation = {
  ...base,
  id: '9b2d0c1e-0000-4000-8000-000000000001',
  status: 'scheduled',
  activated_at: null,
  expires_at: null,
  seconds_remaining: 0,
  start_at: '2026-12-09T09:00:00.000Z',
  duration_minutes: 120,
};

describe('the reservations table', () => {
  it('has the columns of today while nothing is queued or booked', () => {
    expect(reservationsTable([base], false).split('\n')).toEqual(['ID        STATUS  MACHINES  ACCOUNT  EXPIRES           LEFT', '3f1e6a4b  active  node-1    alice    2026-12-08 10:00  30m']);
  });

  it('shows the queue position, the estimated start and a booking’s start when some row is queued or booked', () => {
    const lines = reservationsTable([queued, booked, base, { ...queued, id: 'aaaaaaaa-0000-4000-8000-000000000002', queue_position: 3, estimated_start: null }], false).split('\n');
    expect(lines[0]).toMatch(/^ID +STATUS +MACHINES +ACCOUNT +POSITION +ESTIMATED_START +START_AT +EXPIRES +LEFT$/);
    expect(lines[1]).toMatch(/^7c9e6679 +queued +- +alice +2 +2026-12-08 09:45 +- +- +-$/);
    expect(lines[2]).toMatch(/^9b2d0c1e +scheduled +node-1 +alice +- +- +2026-12-09 09:00 +- +-$/);
    expect(lines[3]).toMatch(/^3f1e6a4b +active +node-1 +alice +- +- +- +2026-12-08 10:00 +30m$/);
    expect(lines[4]).toMatch(/^aaaaaaaa +queued +- +alice +3 +unknown +- +- +-$/);
  });
});

describe('what reserve prints when the machines are not ready yet', () => {
  it('a queued request: its position and estimated start first, then how to cancel', () => {
    expect(describeQueued(queued).split('\n')).toEqual([
      'queued: position 2, estimated start 2026-12-08 09:45',
      'reservation 7c9e6679-7425-40de-944b-e07fc1f90ae7 waits until 2026-12-08 10:00 at the latest',
      'watch: berth reservations    cancel: berth cancel 7c9e6679',
    ]);
    expect(describeQueued({ ...queued, estimated_start: null })).toMatch(/^queued: position 2, estimated start unknown$/m);
  });

  it('a booking: its window, the planned machines, and when its generated password will be shown', () => {
    const withoutKey = describeScheduled(booked, null, true);
    expect(withoutKey).toMatch(/^reservation 9b2d0c1e-\S+ scheduled from 2026-12-09 09:00 to 2026-12-09 11:00$/m);
    expect(withoutKey).toMatch(/^node-1 +10\.0\.0\.21 +22$/m);
    expect(withoutKey).toContain("the account's password is shown once, by `berth reservations show 9b2d0c1e`, after the start");
    const withKey = describeScheduled(booked, { line: 'ssh-ed25519 AAAA', source: '/home/alice/.ssh/id_ed25519.pub' }, false);
    expect(withKey).toMatch(/^key: +\/home\/alice\/\.ssh\/id_ed25519\.pub$/m);
    expect(withKey).not.toContain('password');
    expect(describeScheduled(booked, null, false)).not.toContain('password'); // typed with --password: nothing to reveal
  });
});

describe('a password revealed once', () => {
  it('is printed by show, and noticed from any other answer that carries it', () => {
    const started = { ...booked, status: 'active' as const, account: { username: 'alice', password: 'Zq3v9xT1bN4mK8pL' } };
    expect(describeReservation(started)).toMatch(/^password: +Zq3v9xT1bN4mK8pL +\(shown only now\)$/m);
    expect(passwordNotice(started)).toBe('password of alice on reservation 9b2d0c1e: Zq3v9xT1bN4mK8pL   (shown only now)');
    expect(passwordNotice(base)).toBeNull();
    expect(describeReservation(queued)).toMatch(/^queue position: +2$/m);
    expect(describeReservation(queued)).toMatch(/^estimated start: +2026-12-08 09:45$/m);
  });
});
