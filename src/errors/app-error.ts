// The error domain code raises when a client is to be told no: a code from the catalogue
// (./codes.ts), a sentence for the `detail`, and any extra members of the problem document
// (`available`, `machine` …). It knows nothing of HTTP; the problem plugin renders it.
import { ERROR_CODES, type ErrorCode } from './codes.js';

export class AppError extends Error {
  override name = 'AppError';

  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    /** Extra members of the problem document. */
    readonly extra: Record<string, unknown> = {},
    /** Response headers that go with it (Retry-After …). */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}
