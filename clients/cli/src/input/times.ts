// `berth reserve --at TIME`: a moment as people type it, checked strictly (a typo is a usage
// error, never a guess), sent to berth as RFC 3339 in UTC.
import { InvalidArgumentError } from 'commander';

export const START_TIME_FORMATS =
  'RFC 3339 (2026-12-09T09:00:00Z, 2026-12-09T09:00:00+01:00), or a local time in this ' +
  "machine's time zone: 2026-12-09 09:00 (seconds optional, a T in place of the space too)";

const MOMENT = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(?:([Zz])|([+-])(\d{2}):(\d{2}))?$/;

/** A date and time as `MOMENT` reads it → the RFC 3339 form of that instant, in UTC. */
export function parseStartTime(value: string): string {
  const match = MOMENT.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`use ${START_TIME_FORMATS}`);
  const [, year, month, day, hour, minute, second = '0', fraction = '', utc, sign, offsetHours, offsetMinutes] = match;
  const fields = [year, month, day, hour, minute, second].map(Number) as [number, number, number, number, number, number];
  const [y, mo, d, h, mi, s] = fields;
  const ms = Math.floor(Number(`0${fraction || '.0'}`) * 1000);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) throw new InvalidArgumentError(`${value} is not a valid date and time`);

  let instant: Date;
  if (utc || sign) {
    const offset = sign ? (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes)) : 0;
    if (Number(offsetHours) > 23 || Number(offsetMinutes) > 59) throw new InvalidArgumentError(`${value} has no valid UTC offset`);
    instant = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms) - offset * 60_000);
    // The calendar must have held that day (no 31 April): the UTC fields read back unchanged.
    const back = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
    if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) throw new InvalidArgumentError(`${value} is not a valid date and time`);
  } else {
    instant = new Date(y, mo - 1, d, h, mi, s, ms);
    // Read back in local time: a day the month lacks moves to the next month, and a time a
    // daylight-saving change skips (02:30 on the morning clocks go forward) moves too.
    if (instant.getMonth() !== mo - 1 || instant.getDate() !== d) throw new InvalidArgumentError(`${value} is not a valid date and time`);
    if (instant.getHours() !== h || instant.getMinutes() !== mi) {
      throw new InvalidArgumentError(`${value} does not exist in this machine's time zone (a daylight-saving change skips it)`);
    }
  }
  if (Number.isNaN(instant.getTime())) throw new InvalidArgumentError(`${value} is not a valid date and time`);
  return instant.toISOString();
}
