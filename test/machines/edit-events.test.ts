// An admin's edits of the machine registry are raised once saved, with no credential in
// them: made, changed, imported (made or changed), and deleted (a transition of the pool's
// state machine). Nothing is raised for an edit that was refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, type Session, type TestApp } from '../helpers/app.js';
import { listen } from '../helpers/events.js';

let t: TestApp;
let admin: Session;
let heard: ReturnType<typeof listen>;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t);
  heard = listen(t.app.events);
});
afterAll(() => t.close());

const send = (method: 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) =>
  t.app.inject({ method, url, headers: admin.auth, ...(payload && { payload }) });
const SECRET = 'registry-secret-Pw-71';

describe('machine registry events', () => {
  it('raises made, changed, imported and deleted, never with the credential', async () => {
    const made = await send('POST', '/v1/machines', { name: 'ev-1', host: '127.0.0.1', port: 2999, username: 'root', password: SECRET });
    expect(made.statusCode).toBe(201);
    const id = (made.json() as { id: string }).id;
    expect((await send('POST', '/v1/machines', { name: 'ev-1', host: '127.0.0.1', port: 2999, username: 'root', password: SECRET })).statusCode).toBe(409);
    expect((await send('PATCH', '/v1/machines/ev-1', { tags: { rack: 'b' } })).statusCode).toBe(200);
    const imported = await send('POST', '/v1/machines/import', {
      machines: [
        { name: 'ev-1', host: '127.0.0.1', port: 2999, user: 'root', password: SECRET },
        { name: 'ev-2', host: '127.0.0.1', port: 2998, user: 'root', password: SECRET },
      ],
    });
    expect(imported.json()).toEqual({ created: 1, updated: 1, errors: [] });
    expect((await send('DELETE', '/v1/machines/ev-1')).statusCode).toBe(204);

    const events = heard.take();
    const ev2 = events.find((e) => e.type === 'machine.edited' && e.name === 'ev-2');
    expect(events).toEqual([
      { type: 'machine.edited', machineId: id, name: 'ev-1', change: 'created' },
      { type: 'machine.edited', machineId: id, name: 'ev-1', change: 'updated' },
      { type: 'machine.edited', machineId: id, name: 'ev-1', change: 'updated' },
      { type: 'machine.edited', machineId: ev2 && 'machineId' in ev2 ? ev2.machineId : 'missing', name: 'ev-2', change: 'created' },
      { type: 'machine.changed', machineIds: [id], transition: 'deleteUnlessHeld', status: 'deleted', reservationId: null },
    ]);
    expect(JSON.stringify(events)).not.toContain(SECRET);
  });
});
