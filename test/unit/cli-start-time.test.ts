// `berth reserve --at TIME`: what it accepts (RFC 3339, or a local time in this machine's
// zone) and the instant it sends, in a zone with daylight saving, so that a skipped hour
// and the two offsets of one year are both seen.
import { beforeAll, describe, expect, it } from 'vitest';
import { parseStartTime } from '../../clients/cli/src/input/times.js';

/** The error code parsing `value` throws (the CLI's own commander, not this repository's copy: compared by code). */
function usageErrorOf(value: string): string | undefined {
  try {
    parseStartTime(value);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

beforeAll(() => {
  // Node reads TZ again when it changes: local times below are Berlin's (UTC+1 in winter, UTC+2 in summer).
  process.env.TZ = 'Europe/Berlin';
});

describe('--at', () => {
  it('takes RFC 3339 with Z or an offset, and sends the same instant in UTC', () => {
    expect(parseStartTime('2026-12-09T09:00:00Z')).toBe('2026-12-09T09:00:00.000Z');
    expect(parseStartTime('2026-12-09T09:00:00+01:00')).toBe('2026-12-09T08:00:00.000Z');
    expect(parseStartTime('2026-12-09t09:00:00.5-05:30')).toBe('2026-12-09T14:30:00.500Z');
    expect(parseStartTime('2026-12-31T23:30:00-01:00')).toBe('2027-01-01T00:30:00.000Z');
    expect(parseStartTime(' 2026-12-09 09:00Z ')).toBe('2026-12-09T09:00:00.000Z');
  });

  it("takes a local date and time, in this machine's zone (winter and summer offsets)", () => {
    expect(parseStartTime('2026-12-09 09:00')).toBe('2026-12-09T08:00:00.000Z');
    expect(parseStartTime('2026-12-09T09:00')).toBe('2026-12-09T08:00:00.000Z');
    expect(parseStartTime('2026-07-09 09:00:30')).toBe('2026-07-09T07:00:30.000Z');
  });

  it('refuses what is not a date and time, or names a day or an hour that does not exist, as a usage error', () => {
    const refused = [
      '',
      '09:00',
      'tomorrow 09:00',
      '2026-12-09',
      '2026-3-9 9:00',
      '2026-12-09 9:00',
      '2026-02-30 09:00',
      '2026-04-31T10:00:00Z',
      '2026-13-01 09:00',
      '2026-12-09 24:00',
      '2026-12-09 09:60',
      '2026-12-09 09:00:61',
      '2026-12-09T09:00:00+25:00',
      '2026-12-09T09:00:00 +01:00',
      '1764000000',
    ];
    for (const value of refused) expect(usageErrorOf(value), value).toBe('commander.invalidArgument');
    // Clocks in Berlin go from 02:00 to 03:00 on 29 March 2026: 02:30 never happens there.
    expect(() => parseStartTime('2026-03-29 02:30')).toThrow(/does not exist in this machine's time zone/);
    expect(parseStartTime('2026-03-29T02:30:00+01:00')).toBe('2026-03-29T01:30:00.000Z');
  });
});
