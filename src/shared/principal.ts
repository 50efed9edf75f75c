/** Who is asking: the user of a live session, as the session check found them. */
export interface Principal {
  userId: string;
  username: string;
  email: string | null;
  role: 'user' | 'admin';
  sessionId: string;
}
