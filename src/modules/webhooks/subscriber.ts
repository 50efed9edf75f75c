// Domain events become deliveries: when an event webhooks hear of is raised (after its change
// committed), one delivery row is written per webhook that listens for it, with the body it
// will be signed and sent with on every attempt, and the deliverer is nudged to send it now.
// The body is the Standard Webhooks shape, {type, timestamp, data}, and names things by id,
// name and time only: never a password, key, secret or hash. A failure reads as its owner may
// read it; the machine's own words (adminDetail, a VM's or machine's reason) go to admins'
// webhooks only.
import { randomUUID } from 'node:crypto';
import type { EventBus } from '../../events/bus.js';
import type { Database } from '../../infra/database.js';
import type { Deliverer } from './delivery.js';
import { occurrencesOf, type Occurrence } from './event-map.js';
import { machineFacts, recipientsOf, reservationFacts, vmReason } from './queries.js';

type Data = Record<string, unknown>;

/** The payload's data as an owner's webhook gets it, and as an admin's does. */
async function dataOf(db: Database, o: Occurrence): Promise<{ owner: Data; admin: Data }> {
  switch (o.type) {
    case 'vm.failed': {
      const data = { vm_id: o.vmId, name: o.name, machine_id: o.machineId, reason: await vmReason(db, o.vmId) };
      return { owner: data, admin: data };
    }
    case 'machine.offline': {
      const m = await machineFacts(db, o.machineId);
      const data = { machine_id: o.machineId, name: m?.name ?? null, reason: m?.statusReason ?? null, transition: o.transition, reservation_id: o.reservationId };
      return { owner: data, admin: data };
    }
    default: {
      const r = await reservationFacts(db, o.reservationId);
      const owner = {
        reservation_id: o.reservationId,
        owner: r?.owner ?? null,
        account_username: r?.account ?? null,
        status: o.status,
        machines: r?.machines ?? [],
        start_at: r?.startAt ?? null,
        expires_at: o.expiresAt?.toISOString() ?? r?.expiresAt ?? null,
        reason: o.reason,
        ...(o.minutesLeft !== null && { minutes_left: o.minutesLeft }),
      };
      return { owner, admin: { ...owner, admin_detail: o.adminDetail } };
    }
  }
}

/** Writes the deliveries of one occurrence; how many. */
async function record(db: Database, o: Occurrence, at: Date): Promise<number> {
  // A reservation's owner hears it besides admins; the pool's events (no owner) are admins' alone.
  const recipients = await recipientsOf(db, o.type, 'userId' in o ? o.userId : null);
  if (recipients.length === 0) return 0;
  const data = await dataOf(db, o);
  const now = new Date();
  await db.webhookDelivery.createMany({
    data: recipients.map((r) => ({
      id: randomUUID(),
      webhookId: r.id,
      event: o.type,
      payload: JSON.stringify({ type: o.type, timestamp: at.toISOString(), data: r.admin ? data.admin : data.owner }),
      nextAttemptAt: now,
    })),
  });
  return recipients.length;
}

/** Listens on `events` for as long as the process runs; returns the way to stop. */
export function subscribeWebhooks(deps: { events: Pick<EventBus, 'onAny'>; prisma: Database; deliverer: Pick<Deliverer, 'nudge'> }): () => void {
  const { events, prisma, deliverer } = deps;
  return events.onAny(async (event) => {
    let written = 0;
    for (const o of occurrencesOf(event)) written += await record(prisma, o, event.at);
    if (written > 0) deliverer.nudge();
  });
}
