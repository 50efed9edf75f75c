// The one event stream of a berth process. The module that owns a state raises an event
// once the change is committed; subscribers (webhooks, audit, metrics) hear about it
// without the raising module knowing they exist.
//
// Committed events only, raised after the commit rather than written to an outbox in the
// transaction. Every state change in berth is a conditional update that commits on its
// own, or one short transaction (allocation, user administration): the process whose
// update won is the one that raises, once, and nothing is raised for a change that lost
// its race or rolled back (`afterCommit`). An outbox would make every transition write a
// second row and need a relay with its own claim across processes; what it would add is
// the event of a process that dies between its commit and the next line. The subscribers
// that must not lose that (the audit log) write in the transaction themselves, or
// reconcile from the state, as the reservation job does.
//
// Subscribers run in the raiser's time, one after another, and are awaited: a subscriber
// that has slow work to do (a webhook delivery) records it and returns. A subscriber that
// throws is logged; it never fails the change, which is committed already.
import type { Prisma } from '../generated/prisma/client.js';
import type { DomainEvent, DomainEvents, EventName } from './catalogue.js';

export type { DomainEvent, DomainEvents, EventName } from './catalogue.js';

type Handler<K extends EventName> = (event: DomainEvent<K>) => void | Promise<void>;

/** Records events during a transaction; `afterCommit` raises them once it has committed. */
export type RecordEvent = <K extends EventName>(type: K, payload: DomainEvents[K]) => void;

/** A caller's transaction, and how to raise what happens in it once it commits (`afterCommit`'s record). */
export interface InTransaction {
  tx: Prisma.TransactionClient;
  record: RecordEvent;
}

export interface EventBus {
  /** Hears every event of `type`; returns the way to stop hearing it. */
  on<K extends EventName>(type: K, handler: Handler<K>): () => void;
  /** Hears every event (the audit log, webhooks). */
  onAny(handler: Handler<EventName>): () => void;
  /** Raises a committed change: resolves once every subscriber has had it. */
  raise<K extends EventName>(type: K, payload: DomainEvents[K]): Promise<void>;
  /**
   * Runs `work` (one transaction, or one attempt of it), then raises what it recorded, in
   * order, once it has succeeded; nothing when it throws.
   */
  afterCommit<T>(work: (record: RecordEvent) => Promise<T>): Promise<T>;
}

export function createEventBus(log: { error(obj: object, msg: string): void }): EventBus {
  const handlers = new Map<EventName | '*', Set<Handler<never>>>();

  function subscribe(key: EventName | '*', handler: Handler<never>): () => void {
    const set = handlers.get(key) ?? new Set();
    handlers.set(key, set.add(handler));
    return () => void set.delete(handler);
  }

  async function deliver(event: DomainEvent): Promise<void> {
    const listeners = [...(handlers.get(event.type) ?? []), ...(handlers.get('*') ?? [])] as Handler<EventName>[];
    for (const handler of listeners) {
      try {
        await handler(event);
      } catch (err) {
        log.error({ err, event: event.type }, 'an event subscriber failed');
      }
    }
  }

  const raise = <K extends EventName>(type: K, payload: DomainEvents[K]) => deliver({ ...payload, type, at: new Date() } as DomainEvent);

  return {
    on: (type, handler) => subscribe(type, handler as Handler<never>),
    onAny: (handler) => subscribe('*', handler as Handler<never>),
    raise,
    async afterCommit(work) {
      const recorded: DomainEvent[] = [];
      const result = await work((type, payload) => void recorded.push({ ...payload, type, at: new Date() } as DomainEvent));
      for (const event of recorded) await deliver(event);
      return result;
    },
  };
}
