// The event stream: subscribers hear what is raised, in order; a change that did not
// commit raises nothing; a failing subscriber never fails the raiser nor the others.
import { describe, expect, it } from 'vitest';
import { createEventBus, type DomainEvent } from '../../src/events/bus.js';

function busWithLog() {
  const errors: object[] = [];
  return { bus: createEventBus({ error: (obj) => void errors.push(obj) }), errors };
}

describe('event bus', () => {
  it('delivers an event to the subscribers of its type and to those of every type, with its time', async () => {
    const { bus } = busWithLog();
    const typed: DomainEvent<'user.deleted'>[] = [];
    const all: DomainEvent[] = [];
    bus.on('user.deleted', (e) => void typed.push(e));
    bus.on('user.registered', () => {
      throw new Error('not this one');
    });
    bus.onAny((e) => void all.push(e));
    const before = Date.now();
    await bus.raise('user.deleted', { userId: 'u1' });
    expect(typed).toEqual([expect.objectContaining({ type: 'user.deleted', userId: 'u1' })]);
    expect(typed[0]!.at.getTime()).toBeGreaterThanOrEqual(before);
    expect(all.map((e) => e.type)).toEqual(['user.deleted']);
  });

  it('awaits each subscriber before the raise resolves', async () => {
    const { bus } = busWithLog();
    const order: string[] = [];
    bus.on('user.deleted', async () => {
      await new Promise((r) => setTimeout(r, 20));
      order.push('slow subscriber');
    });
    await bus.raise('user.deleted', { userId: 'u1' });
    order.push('raiser goes on');
    expect(order).toEqual(['slow subscriber', 'raiser goes on']);
  });

  it('logs a failing subscriber and still delivers to the next', async () => {
    const { bus, errors } = busWithLog();
    const heard: string[] = [];
    bus.on('user.deleted', () => {
      throw new Error('subscriber broke');
    });
    bus.on('user.deleted', (e) => void heard.push(e.userId));
    await expect(bus.raise('user.deleted', { userId: 'u2' })).resolves.toBeUndefined();
    expect(heard).toEqual(['u2']);
    expect(errors).toEqual([expect.objectContaining({ event: 'user.deleted' })]);
  });

  it('stops delivering to a subscriber that unsubscribed', async () => {
    const { bus } = busWithLog();
    let heard = 0;
    const stop = bus.onAny(() => void heard++);
    await bus.raise('user.deleted', { userId: 'u1' });
    stop();
    await bus.raise('user.deleted', { userId: 'u1' });
    expect(heard).toBe(1);
  });

  it('raises what a transaction recorded only once it has succeeded, in order', async () => {
    const { bus } = busWithLog();
    const heard: string[] = [];
    bus.onAny((e) => void heard.push(e.type));
    const result = await bus.afterCommit(async (record) => {
      record('user.created', { userId: 'u1', username: 'ada', role: 'user' });
      record('session.revoked', { userId: 'u1', sessionIds: 'all', reason: 'user_disabled' });
      expect(heard).toEqual([]);
      return 42;
    });
    expect(result).toBe(42);
    expect(heard).toEqual(['user.created', 'session.revoked']);
  });

  it('raises nothing for a transaction that rolled back, and each attempt of a retried one records afresh', async () => {
    const { bus } = busWithLog();
    const heard: string[] = [];
    bus.onAny((e) => void heard.push(e.type));
    await expect(
      bus.afterCommit(async (record) => {
        record('user.deleted', { userId: 'u1' });
        throw new Error('deadlock; rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(heard).toEqual([]);
    await bus.afterCommit(async (record) => record('user.deleted', { userId: 'u1' }));
    expect(heard).toEqual(['user.deleted']);
  });
});
