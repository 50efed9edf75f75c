// Why a reservation failed, as each viewer may read it. When an account could not be set
// up, the reason berth records quotes the machine's own error (`useradd: group plugdev
// exists`): admin-side detail. Admins read it whole; users read which machine, and that
// everything was undone. Berth's other reasons (`interrupted while setting up …`) are its
// own words, for everyone.

/** The reason recorded when the account could not be set up on a machine. */
export const setupFailure = (machine: string, error: string) => `could not set up the account on ${machine}: ${error}`;

/** Machine names have no `:` (machines/schemas.ts): what precedes the first one is berth's own words. */
const SETUP_FAILURE = /^(could not set up the account on [^:]+):/;

/** The failure reason `viewer` may read: the recorded one for admins, a neutral one for users. */
export function failureReasonFor(reason: string, viewer: { admin: boolean }): string;
export function failureReasonFor(reason: string | null, viewer: { admin: boolean }): string | null;
export function failureReasonFor(reason: string | null, viewer: { admin: boolean }): string | null {
  const setup = reason === null || viewer.admin ? null : SETUP_FAILURE.exec(reason);
  return setup ? `${setup[1]}; everything was undone (an admin can read why)` : reason;
}
