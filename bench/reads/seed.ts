// Rows for bench/reads, written straight into berth's database with the mariadb driver:
// machines as an import would leave them (a sealed credential of a realistic size
// included, so a list that loads it pays for it), reservations holding machines, and
// VM records with their machines. No SSH, QEMU or Docker is involved.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Connection } from 'mariadb';

/** A sealed ed25519 private key is about this long (OpenSSH PEM + AES-GCM nonce and tag). */
const SEALED_CREDENTIAL_BYTES = 460;
/** The VM records belong to another host, so this process's VM watch leaves them alone. */
export const OTHER_NODE = 'bench-other-host';

const fingerprint = () => `SHA256:${randomBytes(32).toString('base64').replace(/=+$/, '')}`;

export async function seedMachines(db: Connection, names: string[], type = 'server'): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, name] of names.entries()) {
    const id = randomUUID();
    ids.push(id);
    await db.query(
      `INSERT INTO machines (id, name, host, port, username, credential_kind, credential, host_key_fingerprint, type, tags, allow_sudo,
                             status, status_reason, last_checked_at, created_at, updated_at)
       VALUES (?, ?, ?, 22, 'root', 'private_key', ?, ?, ?, ?, true, ?, ?, NOW(3), NOW(3), NOW(3))`,
      [
        id,
        name,
        // Loopback addresses: nothing in the bench connects to them, and nothing could leave the machine if it did.
        `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
        randomBytes(SEALED_CREDENTIAL_BYTES),
        fingerprint(),
        type,
        JSON.stringify({ rack: `r${i % 8}`, gpu: i % 3 === 0 ? 'a100' : 'none' }),
        // Mostly available, a few out of the pool, as a real pool looks.
        i % 10 === 9 ? 'offline' : i % 10 === 8 ? 'maintenance' : 'available',
        i % 10 === 9 ? 'unreachable: connect ETIMEDOUT' : i % 10 === 8 ? 'replacing a disk' : null,
      ],
    );
  }
  return ids;
}

/**
 * `count` reservations of `userId`, newest first by creation, each holding `perReservation`
 * of `machineIds` (the live ones mark their machines reserved, as allocation does).
 */
export async function seedReservations(db: Connection, user: { id: string; username: string }, machineIds: string[], count: number, perReservation: number) {
  let next = 0;
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    const live = i < Math.floor(machineIds.length / perReservation / 2);
    const status = live ? 'active' : i % 7 === 0 ? 'failed' : 'released';
    await db.query(
      `INSERT INTO reservations (id, user_id, owner_username, status, account_username, duration_minutes, expires_at, max_expires_at,
                                 failure_reason, release_reason, created_at, activated_at, released_at)
       VALUES (?, ?, ?, ?, ?, 120, ?, ?, ?, ?, NOW(3) - INTERVAL ? SECOND, NOW(3) - INTERVAL ? SECOND, ?)`,
      [
        id,
        user.id,
        user.username,
        status,
        user.username,
        live ? new Date(Date.now() + 3 * 3600_000) : null,
        new Date(Date.now() + 24 * 3600_000),
        status === 'failed' ? 'node-3: connect ECONNREFUSED' : null,
        status === 'released' ? 'released' : null,
        // Created a minute apart, each activated a second after it was created.
        (i + 1) * 60,
        (i + 1) * 60 - 1,
        status === 'released' ? new Date(Date.now() - i * 30_000) : null,
      ],
    );
    for (let k = 0; k < perReservation; k++) {
      const machineId = machineIds[next++ % machineIds.length]!;
      await db.query('INSERT INTO reservation_machines (reservation_id, machine_id) VALUES (?, ?)', [id, machineId]);
      if (live) await db.query(`UPDATE machines SET status = 'reserved', status_reason = NULL, reservation_id = ? WHERE id = ?`, [id, machineId]);
    }
  }
}

/** One ready image and `count` VMs of it, each with its machine (type vm, tag image=<name>). */
export async function seedVms(db: Connection, count: number) {
  const imageId = randomUUID();
  await db.query(
    `INSERT INTO images (id, name, status, docker_id, size_bytes, build_ms, convert_ms, config, created_at, updated_at)
     VALUES (?, 'devbox', 'ready', ?, 734003200, 41000, 9000, ?, NOW(3), NOW(3))`,
    [imageId, `sha256:${randomBytes(32).toString('hex')}`, JSON.stringify({ entrypoint: [], cmd: ['sleep', 'infinity'], env: [], user: '', workdir: '/' })],
  );
  for (let i = 0; i < count; i++) {
    const name = `devbox-${String(i).padStart(3, '0')}`;
    const machineId = randomUUID();
    const port = 40000 + i;
    const fp = fingerprint();
    await db.query(
      `INSERT INTO machines (id, name, host, port, username, credential_kind, credential, host_key_fingerprint, type, tags, status, created_at, updated_at)
       VALUES (?, ?, '127.0.0.1', ?, 'root', 'private_key', ?, ?, 'vm', ?, 'available', NOW(3), NOW(3))`,
      [machineId, name, port, randomBytes(SEALED_CREDENTIAL_BYTES), fp, JSON.stringify({ image: 'devbox' })],
    );
    await db.query(
      `INSERT INTO vms (id, name, image_id, machine_id, state, node, cpus, memory_mb, ssh_port, host_key_fingerprint, host_key_public,
                        host_key_sealed, root_key_public, boot_ms, created_at, updated_at)
       VALUES (?, ?, ?, ?, 'running', ?, 1, 512, ?, ?, ?, ?, ?, 4120, NOW(3), NOW(3))`,
      [
        randomUUID(),
        name,
        imageId,
        machineId,
        OTHER_NODE,
        port,
        fp,
        `ssh-ed25519 ${randomBytes(51).toString('base64')}`,
        randomBytes(180),
        `ssh-ed25519 ${randomBytes(51).toString('base64')} berth root key for ${name}`,
      ],
    );
  }
}
