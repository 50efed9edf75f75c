// Problem documents (RFC 9457) as berth answers them, typed so that `code` narrows:
//   if (problem.code === 'insufficient_capacity') problem.available  // number
import { PROBLEM_CODES, type ProblemCode } from './generated/problem-codes.js';

interface ProblemFields<C extends ProblemCode> {
  type: string;
  title: string;
  status: number;
  detail?: string;
  /** Stable and machine-readable: branch on this, not on `title` or `detail`. */
  code: C;
  instance?: string;
  /** Extension members some problems add. */
  [member: string]: unknown;
}

/** The members particular codes add to the problem document. */
interface ProblemMembers {
  validation_failed: { errors: { pointer: string; message: string }[] };
  insufficient_capacity: { available: number; requested: number };
  exceeds_max_duration: { max_expires_at: string };
  provisioning_failed: { reservation_id?: string };
  pool_reserved: { reserved?: number };
  missing_token: { active?: false };
  invalid_token: { active?: false };
  token_expired: { active?: false };
  session_revoked: { active?: false };
}

/** One problem document per code, each with the members its code adds. */
export type BerthProblem = {
  [C in ProblemCode]: ProblemFields<C> & (C extends keyof ProblemMembers ? ProblemMembers[C] : unknown);
}[ProblemCode];

export type ProblemOf<C extends ProblemCode> = Extract<BerthProblem, { code: C }>;

/** A request berth answered with a problem document. */
export class BerthProblemError extends Error {
  readonly status: number;

  constructor(
    readonly problem: BerthProblem,
    readonly response: Response,
  ) {
    super(`${problem.status} ${problem.code}: ${problem.detail ?? problem.title}`);
    this.name = 'BerthProblemError';
    this.status = problem.status;
  }

  /** Narrows the error to one problem code: `if (err.is('insufficient_capacity')) err.problem.available`. */
  is<C extends ProblemCode>(code: C): this is BerthProblemError & { problem: ProblemOf<C> } {
    return this.problem.code === code;
  }
}

/** An error answer that is not a problem document this client knows (e.g. a proxy's error page). */
export class BerthHttpError extends Error {
  readonly status: number;

  constructor(
    readonly response: Response,
    /** The body as openapi-fetch read it: parsed JSON, or text. */
    readonly body: unknown,
  ) {
    super(`${response.status} ${response.statusText}`);
    this.name = 'BerthHttpError';
    this.status = response.status;
  }
}

/** Whether a value is a problem document berth answered (any code it knows, or one of the given ones). */
export function isProblem<C extends ProblemCode = ProblemCode>(value: unknown, ...codes: C[]): value is ProblemOf<C> {
  if (typeof value !== 'object' || value === null) return false;
  const code = (value as { code?: unknown }).code;
  if (typeof code !== 'string' || typeof (value as { status?: unknown }).status !== 'number') return false;
  return codes.length ? (codes as string[]).includes(code) : (PROBLEM_CODES as readonly string[]).includes(code);
}

export { PROBLEM_CODES, type ProblemCode };
