// The machines' SQL in one place: the view the API shows (the list's SELECT, and the same
// view of a row Prisma read), the pool counts, and the one tag filter that both the list
// and allocation (reservations/allocation.ts) match machines by.
import { isoTime, isoTimeOrNull, type IsoTime } from '../../shared/timestamps.js';
import type { Database } from '../../infra/database.js';
import type { MachineRow } from './access.js';

/** A machine as the API shows it: no credential; times in ISO 8601, as the list reads them. */
export type MachineView = Omit<MachineRow, 'credential' | 'credentialKind' | 'sudoGranted' | 'lastCheckedAt' | 'createdAt' | 'updatedAt'> & {
  lastCheckedAt: IsoTime | null;
  createdAt: IsoTime;
  updatedAt: IsoTime;
};

/** The columns of a MachineView, under its names (bench/reads runs the same SELECT). */
export const MACHINE_VIEW_COLUMNS = `id, name, host, port, username, type, tags, allow_sudo AS allowSudo, keep_password AS keepPassword, status, status_reason AS statusReason,
  host_key_fingerprint AS hostKeyFingerprint, host_key AS hostKey, reservation_id AS reservationId, last_checked_at AS lastCheckedAt,
  created_at AS createdAt, updated_at AS updatedAt`;

/** One page of machines in name order, WHERE `where` (infra/sql-where.ts), its LIMIT a placeholder. */
export const machinePageSql = (where: string) => `SELECT ${MACHINE_VIEW_COLUMNS} FROM machines ${where} ORDER BY name LIMIT ?`;

/** The view of a machine row read through Prisma: what the list's SELECT gives for it. */
export function machineView(m: MachineRow): MachineView {
  return {
    id: m.id,
    name: m.name,
    host: m.host,
    port: m.port,
    username: m.username,
    type: m.type,
    tags: m.tags,
    allowSudo: m.allowSudo,
    keepPassword: m.keepPassword,
    status: m.status,
    statusReason: m.statusReason,
    hostKeyFingerprint: m.hostKeyFingerprint,
    hostKey: m.hostKey,
    reservationId: m.reservationId,
    lastCheckedAt: isoTimeOrNull(m.lastCheckedAt),
    createdAt: isoTime(m.createdAt),
    updatedAt: isoTime(m.updatedAt),
  };
}

/**
 * Every column of a MachineRow, under its names, for a read Prisma cannot write (a locking
 * one): its raw answer gives everything as Prisma would but the booleans, as numbers.
 */
export const MACHINE_ROW_COLUMNS = `id, name, host, port, username, credential_kind AS credentialKind, credential, keep_password AS keepPassword,
  host_key_fingerprint AS hostKeyFingerprint, host_key AS hostKey, type, tags, allow_sudo AS allowSudo, sudo_granted AS sudoGranted, status,
  status_reason AS statusReason, reservation_id AS reservationId, last_checked_at AS lastCheckedAt, created_at AS createdAt, updated_at AS updatedAt`;

type RawMachineRow = Omit<MachineRow, 'keepPassword' | 'allowSudo' | 'sudoGranted'> & Record<'keepPassword' | 'allowSudo' | 'sudoGranted', number>;

/** A MachineRow from a raw read of MACHINE_ROW_COLUMNS. */
export function machineRowOf(raw: RawMachineRow): MachineRow {
  return { ...raw, keepPassword: raw.keepPassword === 1, allowSudo: raw.allowSudo === 1, sudoGranted: raw.sudoGranted === 1 };
}

/**
 * Machines by status and type. Grouped in the order of the (status, type) index, MariaDB
 * counts from the index alone; by (type, status) it sorted a temporary table first, at a
 * third of the rate (measured).
 */
export const POOL_COUNTS = 'SELECT status, type, COUNT(*) AS n FROM machines GROUP BY status, type';

/**
 * The machine's tag `key` is `value`, as Prisma's JSON filter `{ path, equals }` writes it:
 * the value at the key and the JSON string contain each other, i.e. they are equal (as JSON:
 * exactly, whatever the column's collation). A condition with its placeholders' values, as
 * whereAll (infra/sql-where.ts) takes it.
 */
export function tagIs(key: string, value: string): readonly [string, ...unknown[]] {
  const path = `$."${key}"`;
  const json = JSON.stringify(value);
  return ['JSON_CONTAINS(JSON_EXTRACT(tags, ?), ?) AND JSON_CONTAINS(?, JSON_EXTRACT(tags, ?))', path, json, json, path];
}

/** tag=key:value of the list's query string, as the same condition. */
export function tagFilter(filter: string): readonly [string, ...unknown[]] {
  const i = filter.indexOf(':');
  return tagIs(filter.slice(0, i), filter.slice(i + 1));
}

/** The bookings (scheduled reservations) planned on machine `id` that have not ended, soonest first. */
export function bookingsOn(prisma: Database, id: string): Promise<{ id: string; startAt: IsoTime; expiresAt: IsoTime }[]> {
  return prisma.$rows(
    `SELECT r.id, r.start_at AS startAt, r.expires_at AS expiresAt FROM reservation_machines rm JOIN reservations r ON r.id = rm.reservation_id
      WHERE rm.machine_id = ? AND r.status = 'scheduled' AND r.expires_at > ? ORDER BY r.start_at LIMIT 100`,
    [id, new Date()],
  );
}
