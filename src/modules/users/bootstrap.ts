// First start: make sure an admin exists. With ADMIN_PASSWORD the admin gets that
// password; without it a strong one is generated, printed once and kept (mode 0600) in
// the data directory so an operator who missed the log can still find it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { PasswordHasher } from '../identity/passwords.js';
import { isUniqueViolation } from '../../infra/database.js';

export const ADMIN_PASSWORD_FILE = 'admin-password';

export interface BootstrapResult {
  created: boolean;
  username: string;
  /** Set only when berth generated the password just now. */
  generatedPassword?: string;
  passwordFile?: string;
}

export async function ensureAdmin(
  deps: { prisma: PrismaClient; hasher: PasswordHasher },
  opts: { username: string; password?: string; dataDir: string },
): Promise<BootstrapResult> {
  const { prisma, hasher } = deps;
  if ((await prisma.user.count({ where: { role: 'admin' } })) > 0) return { created: false, username: opts.username };

  const existing = await prisma.user.findUnique({ where: { username: opts.username }, select: { id: true } });
  if (existing) {
    throw new Error(
      `there is no admin, and ADMIN_USERNAME=${opts.username} already belongs to a regular user; choose another ADMIN_USERNAME`,
    );
  }
  const generated = opts.password ? undefined : randomBytes(18).toString('base64url');
  const password = opts.password ?? generated!;
  try {
    await prisma.user.create({ data: { username: opts.username, role: 'admin', passwordHash: await hasher.hash(password) } });
  } catch (err) {
    // Another berth process bootstrapped the same admin a moment ago.
    if (isUniqueViolation(err)) return { created: false, username: opts.username };
    throw err;
  }
  if (!generated) return { created: true, username: opts.username };
  const passwordFile = path.join(opts.dataDir, ADMIN_PASSWORD_FILE);
  await fs.mkdir(opts.dataDir, { recursive: true });
  await fs.writeFile(passwordFile, `${generated}\n`, { mode: 0o600 });
  return { created: true, username: opts.username, generatedPassword: generated, passwordFile };
}
