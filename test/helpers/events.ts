// What a test hears of an app's (or a module's) event stream.
import type { DomainEvent, EventBus } from '../../src/events/bus.js';

/** Records every event `bus` raises; `take()` answers those heard since the last take, without their times. */
export function listen(bus: Pick<EventBus, 'onAny'>) {
  let heard: DomainEvent[] = [];
  bus.onAny((e) => void heard.push(e));
  return {
    take() {
      const got = heard.map(({ at: _at, ...e }) => e);
      heard = [];
      return got;
    },
    forget() {
      heard = [];
    },
  };
}
