// Reserve a machine with @berth/client, say where to log in, and release it.
//   BERTH_URL=https://localhost BERTH_USERNAME=alice BERTH_PASSWORD='…' \
//   NODE_EXTRA_CA_CERTS=/path/to/caddy/root.crt npx tsx clients/typescript/examples/reserve.ts
// (NODE_EXTRA_CA_CERTS only for a private CA, such as a local Caddy's.)
import { BerthProblemError, createBerthClient, unwrap } from '@berth/client';

const berth = createBerthClient({ baseUrl: process.env.BERTH_URL ?? 'https://localhost' });
await berth.login(process.env.BERTH_USERNAME ?? '', process.env.BERTH_PASSWORD ?? '');
try {
  const reservation = unwrap(await berth.api.POST('/v1/reservations', { body: { count: 1, duration_minutes: 30 } }));
  for (const m of reservation.machines) console.log(`reserved ${m.name}: ssh -p ${m.port} ${reservation.account.username}@${m.host}`);
  const released = unwrap(await berth.api.DELETE('/v1/reservations/{id}', { params: { path: { id: reservation.id } } }));
  console.log(`reservation ${released.id} ${released.status}`);
} catch (err) {
  if (err instanceof BerthProblemError && err.is('insufficient_capacity')) {
    console.error(`no machine is free: ${err.problem.available} available`);
    process.exitCode = 2;
  } else throw err;
} finally {
  await berth.logout();
}
