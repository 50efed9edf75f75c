/** Who is asking: the user behind a request, as the check of what they presented found them. */
export interface Principal {
  userId: string;
  username: string;
  email: string | null;
  role: 'user' | 'admin';
  /**
   * What proved it is them: the session of a login today (API tokens add their own kind).
   * Rules that concern the caller's session (ending every other one on a password change,
   * marking the current one in a list) read it here, and apply to a session only.
   */
  authenticatedBy: AuthenticatedBy;
}

export type AuthenticatedBy = { kind: 'session'; sessionId: string };

/** The session the caller authenticated with; null when it was something else. */
export function sessionOf(principal: Principal): string | null {
  return principal.authenticatedBy.kind === 'session' ? principal.authenticatedBy.sessionId : null;
}
