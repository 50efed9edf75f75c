// Who may migrate right now, as a row rather than a server-side named lock: GET_LOCK is
// local to one MariaDB server and Galera does not replicate it, so two berth processes
// talking to two nodes of one cluster would both "hold" it. A lease row is an ordinary
// replicated write: taken by a conditional insert or update (free, or its lease ran out),
// renewed while its holder works, deleted when done. A holder that died simply stops
// renewing, and the next process takes the row over once its lease has run out.
//
// Every time is the database's own (NOW(3)), so the processes' clocks never disagree.
import { randomUUID } from 'node:crypto';
import { createConnection, type Connection } from 'mariadb';
import { connectionConfig, type DatabaseTarget } from './database.js';

// Made before anything else, so it exists even on a database no migration has touched yet
// (test/db/schema-drift.test.ts knows it is there beside the schema's tables).
const CREATE_LEASE_TABLE = `
CREATE TABLE IF NOT EXISTS _berth_migration_lock (
    name        VARCHAR(64) PRIMARY KEY NOT NULL,
    owner       CHAR(36) NOT NULL,
    lease_until DATETIME(3) NOT NULL
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`;

// MariaDB's ER_LOCK_DEADLOCK, which is also how Galera reports a write that lost to a
// concurrent one on another node at commit (certification failure): the row was busy.
const ER_LOCK_DEADLOCK = 1213;

export interface LeaseOptions {
  /** The row's key: one lease per kind of work. */
  name: string;
  /** How long a lease lasts unless renewed; a dead holder blocks the others this long at most. */
  leaseSeconds: number;
  /** How long to keep trying before giving up (a live holder may take its time). */
  timeoutSeconds: number;
  /** The message of the error thrown when the wait runs out. */
  onTimeout: () => Error;
  /** Between two attempts (a little random spread is added, so waiters do not move in step). */
  pollMs?: number;
}

export interface Lease {
  /** Why the lease was lost meanwhile (a renewal found another owner, or failed); null while it is held. */
  lostBecause(): string | null;
  /** Stops renewing and gives the row up (only if still ours). */
  release(): Promise<void>;
}

/** Waits for the lease named `opts.name` and holds it, renewed, until `release()`. */
export async function takeLease(target: DatabaseTarget, opts: LeaseOptions): Promise<Lease> {
  // A connection of its own: renewals must not queue behind a long migration statement.
  const conn = await createConnection(connectionConfig(target));
  try {
    await conn.query(CREATE_LEASE_TABLE);
    const owner = randomUUID();
    const deadline = Date.now() + opts.timeoutSeconds * 1000;
    while (!(await tryTake(conn, opts, owner))) {
      if (Date.now() >= deadline) throw opts.onTimeout();
      const pollMs = opts.pollMs ?? 250;
      await new Promise((resolve) => setTimeout(resolve, pollMs + Math.random() * pollMs));
    }
    return holdLease(conn, opts, owner);
  } catch (err) {
    await conn.end().catch(() => {});
    throw err;
  }
}

/** One attempt: a new row, or a row whose lease has run out (or that is already ours). */
async function tryTake(conn: Connection, opts: LeaseOptions, owner: string): Promise<boolean> {
  try {
    const inserted = await conn.query(
      'INSERT IGNORE INTO _berth_migration_lock (name, owner, lease_until) VALUES (?, ?, NOW(3) + INTERVAL ? SECOND)',
      [opts.name, owner, opts.leaseSeconds],
    );
    if (Number(inserted.affectedRows) === 1) return true;
    const taken = await conn.query(
      `UPDATE _berth_migration_lock SET owner = ?, lease_until = NOW(3) + INTERVAL ? SECOND
        WHERE name = ? AND (owner = ? OR lease_until < NOW(3))`,
      [owner, opts.leaseSeconds, opts.name, owner],
    );
    return Number(taken.affectedRows) === 1;
  } catch (err) {
    if ((err as { errno?: number }).errno === ER_LOCK_DEADLOCK) return false;
    throw err;
  }
}

function holdLease(conn: Connection, opts: LeaseOptions, owner: string): Lease {
  let lost: string | null = null;
  let renewing: Promise<void> = Promise.resolve();
  // Three renewals per lease, so a late one still comes before the lease runs out; a failed
  // one counts as lost (the migration stops before its next step rather than risk a rival).
  const timer = setInterval(() => {
    renewing = renewing.then(async () => {
      if (lost) return;
      try {
        const renewed = await conn.query(
          'UPDATE _berth_migration_lock SET lease_until = NOW(3) + INTERVAL ? SECOND WHERE name = ? AND owner = ?',
          [opts.leaseSeconds, opts.name, owner],
        );
        if (Number(renewed.affectedRows) !== 1) lost = `the ${opts.name} lease was taken over by another process`;
      } catch (err) {
        lost = `could not renew the ${opts.name} lease: ${(err as Error).message}`;
      }
    });
  }, (opts.leaseSeconds * 1000) / 3);
  timer.unref();

  return {
    lostBecause: () => lost,
    async release() {
      clearInterval(timer);
      await renewing;
      try {
        await conn.query('DELETE FROM _berth_migration_lock WHERE name = ? AND owner = ?', [opts.name, owner]);
      } finally {
        await conn.end();
      }
    },
  };
}
