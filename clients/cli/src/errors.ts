// What can go wrong in one run of `berth`, and the exit code each kind gives, so that a
// script can tell a typo from an expired session from a full pool from a dead server.
import { BerthHttpError, BerthProblemError } from '@berth/client';

export const EXIT = {
  ok: 0,
  /** The command ran and what it did failed: a build that failed, a host key that does not match. */
  failed: 1,
  /** The command line itself is wrong: an unknown command or option, a bad value, a missing argument. */
  usage: 2,
  /** Not logged in, the session ended, wrong username or password (401). */
  auth: 3,
  /** The server refused the request (any other 4xx: not allowed, not found, conflict, limits). */
  refused: 4,
  /** The server failed (5xx) or could not be reached (network, TLS). */
  unavailable: 5,
  /** Stopped with Ctrl-C. */
  interrupted: 130,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the command ran and what it did failed (e.g. an image build failed, a host key did not match)
  2  usage error: unknown command or option, bad value, missing argument
  3  authentication: not logged in, session ended (log in again), wrong username or password,
     account disabled
  4  refused by the server: not allowed, not found, conflict, limit reached (any 4xx but 401)
  5  the server failed (5xx) or could not be reached (network, TLS)
  berth ssh exits with ssh's own status (the remote command's, or 255 when ssh fails)`;

/** A failure with the message to print and the exit code to leave with. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const LOG_IN_AGAIN = 'log in again with `berth login`';

export const usageError = (message: string) => new CliError(message, EXIT.usage);
export const authError = (message: string) => new CliError(message, EXIT.auth);

/** Refusals that mean "you cannot be this user", whatever their status. */
const AUTH_CODES = new Set(['account_disabled']);

/** The exit code for an HTTP status (and problem code) berth answered with. */
function exitCodeForStatus(status: number, code?: unknown): number {
  if (status === 401 || (typeof code === 'string' && AUTH_CODES.has(code))) return EXIT.auth;
  if (status >= 400 && status < 500) return EXIT.refused;
  return EXIT.unavailable;
}

interface ProblemLike {
  code?: unknown;
  detail?: unknown;
  title?: unknown;
  errors?: unknown;
}

/** One line for a problem document: `code: detail (pointer: message; …)`. */
function describeProblem(problem: ProblemLike, status: number): string {
  const code = typeof problem.code === 'string' ? problem.code : `HTTP ${status}`;
  const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : '';
  const fields = Array.isArray(problem.errors)
    ? problem.errors
        .filter((e): e is { pointer: string; message: string } => typeof e?.pointer === 'string' && typeof e?.message === 'string')
        .map((e) => `${e.pointer || '/'}: ${e.message}`)
    : [];
  const text = [detail, fields.length ? `(${fields.join('; ')})` : ''].filter(Boolean).join(' ');
  return oneLine(text ? `${code}: ${text}` : code);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').slice(0, 2000);
}

/** Why a request never got an answer, from the chain of causes fetch wraps it in. */
function networkReason(err: Error): string {
  let cause: unknown = err;
  const reasons: string[] = [];
  while (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    reasons.push(typeof code === 'string' && !cause.message.includes(code) ? `${cause.message} (${code})` : cause.message);
    cause = cause.cause;
  }
  return reasons.at(-1) ?? String(err);
}

/** Turns anything a command threw into the message and exit code berth leaves with. */
export function toCliError(err: unknown, serverUrl?: string): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof BerthProblemError) {
    const message = describeProblem(err.problem, err.status);
    // A token refused mid-run (the session was revoked meanwhile): the way out is the same.
    const hint = err.status === 401 && err.problem.code !== 'invalid_credentials' ? `: ${LOG_IN_AGAIN}` : '';
    return new CliError(message + hint, exitCodeForStatus(err.status, err.problem.code));
  }
  if (err instanceof BerthHttpError) {
    // A problem with a code newer than this client, or a proxy's own error page.
    const body = err.body;
    const message =
      typeof body === 'object' && body !== null && 'code' in body
        ? describeProblem(body as ProblemLike, err.status)
        : `HTTP ${err.status} ${err.response.statusText}${typeof body === 'string' && body.trim() ? `: ${oneLine(body.trim()).slice(0, 200)}` : ''}`;
    return new CliError(message, exitCodeForStatus(err.status, (body as ProblemLike | null)?.code));
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    return new CliError(`cannot reach ${serverUrl ?? 'the server'}: ${networkReason(err)}`, EXIT.unavailable);
  }
  if (err instanceof Error) return new CliError(err.message, EXIT.failed);
  return new CliError(String(err), EXIT.failed);
}
