// Scheduling decisions, one at a time: every decision (a request's allocation, the queue's
// promotion, a booking's start or re-plan, an extension) runs in a transaction that first
// writes the one planner row (queries.ts, lockPlanner), which serialises decisions across
// processes. Within a process they also wait for each other here, before taking a database
// connection: two hundred requests at once would otherwise hold every pooled connection
// while they wait for the row, and starve everything else (a session check, a read) of one.
import pLimit from 'p-limit';
import type { Prisma, PrismaClient } from '../../generated/prisma/client.js';
import type { EventBus, RecordEvent } from '../../events/bus.js';
import { withDeadlockRetry } from '../../infra/database.js';
import { lockPlanner } from './queries.js';

/** A decision's transaction may take this long, waiting for the planner row included. */
const DECISION_TIMEOUT_MS = 15_000;

export type Decide = <T>(work: (tx: Prisma.TransactionClient, record: RecordEvent) => Promise<T>) => Promise<T>;

export function createDecisions(prisma: PrismaClient, events: Pick<EventBus, 'afterCommit'>): Decide {
  const oneAtATime = pLimit(1);
  return (work) =>
    oneAtATime(() =>
      withDeadlockRetry(() =>
        events.afterCommit((record) =>
          prisma.$transaction(
            async (tx) => {
              await lockPlanner(tx);
              return work(tx, record);
            },
            // READ COMMITTED: what other decisions committed before the planner row was ours is
            // seen. The time limit covers waiting for another process's decision to end.
            { isolationLevel: 'ReadCommitted', timeout: DECISION_TIMEOUT_MS },
          ),
        ),
      ),
    );
}
