// The notices' bands of time left and the line a terminal shows (notices.ts); sending them
// to real terminals is tested in test/reservations/notices.test.ts.
import { describe, expect, it } from 'vitest';
import { noticeBands, noticeLine } from '../../src/modules/reservations/notices.js';

describe('notice bands', () => {
  it('cut the time left at each notice, smallest first, each band marking the larger notices sent with it', () => {
    expect(noticeBands([10, 2])).toEqual([
      { minutes: 2, after: 0, larger: [10] },
      { minutes: 10, after: 2, larger: [] },
    ]);
    expect(noticeBands([5, 30, 15])).toEqual([
      { minutes: 5, after: 0, larger: [15, 30] },
      { minutes: 15, after: 5, larger: [30] },
      { minutes: 30, after: 15, larger: [] },
    ]);
  });

  it('are none without notices, and one for a single notice', () => {
    expect(noticeBands([])).toEqual([]);
    expect(noticeBands([10])).toEqual([{ minutes: 10, after: 0, larger: [] }]);
  });
});

describe('the notice line', () => {
  it('says the end in HH:MM UTC and the command that extends the reservation', () => {
    const id = '3f1e6a4b-8c2d-4e5f-9a0b-1c2d3e4f5a6b';
    expect(noticeLine(id, new Date('2026-12-08T14:00:30.500Z'))).toBe(`berth: this reservation ends at 14:00 UTC — berth extend ${id}`);
    expect(noticeLine(id, new Date('2026-12-08T09:05:00+02:00'))).toBe(`berth: this reservation ends at 07:05 UTC — berth extend ${id}`);
  });
});
