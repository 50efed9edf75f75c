/**
 * berth usernames (and the Unix account names they default to): a lowercase letter, then
 * lowercase letters, digits, "_" or "-", 2 to 32 characters. Checking this before any
 * lookup also matters at login: the database compares with a collation under which
 * "alicé", "ａｌｉｃｅ" or "ÅLICE" equal "alice".
 */
export const USERNAME_PATTERN = /^[a-z][a-z0-9_-]{1,31}$/;
export const USERNAME_RULE = 'must be 2-32 characters: a lowercase letter, then lowercase letters, digits, _ or -';
