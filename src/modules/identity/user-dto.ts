import type { UserRecord } from './service.js';

/** The public shape of a user: never the password hash. */
export function toUserDto(u: UserRecord) {
  return {
    id: u.id,
    username: u.username,
    email: u.email,
    role: u.role,
    disabled: u.disabled,
    created_at: u.createdAt.toISOString(),
    updated_at: u.updatedAt.toISOString(),
  };
}
