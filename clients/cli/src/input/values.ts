// Option values as people type them, checked strictly: a typo is a usage error (exit 2),
// never a guess.
import { InvalidArgumentError } from 'commander';

const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$/;

/** `30m`, `2h`, `1h30m`, `1d`, or a bare number of minutes → minutes. */
export function parseDurationMinutes(value: string): number {
  const text = value.trim().toLowerCase();
  if (/^\d+$/.test(text)) return positive(Number(text), value);
  const match = DURATION.exec(text);
  if (!text || !match) throw new InvalidArgumentError('use minutes, hours or days, e.g. 30m, 2h, 1h30m, 1d');
  const [, d = '0', h = '0', m = '0'] = match;
  return positive(Number(d) * 1440 + Number(h) * 60 + Number(m), value);
}

function positive(minutes: number, value: string): number {
  if (!Number.isSafeInteger(minutes) || minutes <= 0) throw new InvalidArgumentError(`${value} is not a positive duration`);
  return minutes;
}

export function parseCount(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new InvalidArgumentError('a whole number of at least 1');
  return Number(value);
}

export function parseNonNegative(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError('a whole number (0 or more)');
  return Number(value);
}

export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value.trim()) || port < 1 || port > 65535) throw new InvalidArgumentError('a port number, 1 to 65535');
  return port;
}

/** Collects repeated `--tag k=v` into an object (later ones win). */
export function collectTag(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('a tag is key=value, e.g. --tag gpu=a100');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/** Collects a repeatable option into a list. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
