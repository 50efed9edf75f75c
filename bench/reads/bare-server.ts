// The references of bench/reads, in a process of their own: bare Fastify routes (no auth,
// no plugins, no logging) that run the SELECT berth's list runs (berth's own SQL text, only
// the text is imported), through the raw mariadb driver with berth's pool size, and return
// the rows as JSON with Fastify's default serializer; and `/`, the bare route of
// bench/identity, for whoami and verify.
//   BENCH_DB_SOCKET=/path/mysqld.sock BENCH_DB_NAME=berth tsx bench/reads/bare-server.ts
import Fastify from 'fastify';
import mariadb from 'mariadb';
import { MACHINE_VIEW_COLUMNS, POOL_COUNTS } from '../../src/modules/machines/queries.js';
import { RESERVATION_VIEW_SELECT } from '../../src/modules/reservations/queries.js';
import { VM_VIEW_SELECT } from '../../src/modules/vms/queries.js';
import { sqlTime } from '../../src/infra/sql-where.js';

const pool = mariadb.createPool({
  socketPath: process.env.BENCH_DB_SOCKET,
  user: process.env.BENCH_DB_USER ?? 'root',
  database: process.env.BENCH_DB_NAME ?? 'berth',
  connectionLimit: 10, // berth's (src/infra/database.ts)
  bigIntAsNumber: true, // COUNT(*) as a number JSON can write
});

// berth's SELECTs, imported so that the reference runs exactly what berth runs, with the
// conditions and order of the lists as the bench asks for them.
const MACHINES = `SELECT ${MACHINE_VIEW_COLUMNS} FROM machines ORDER BY name LIMIT ?`;
const RESERVATIONS = `${RESERVATION_VIEW_SELECT} WHERE (r.user_id = ?) ORDER BY r.created_at DESC, r.id DESC LIMIT ?`;
const VMS = `${VM_VIEW_SELECT} ORDER BY v.name LIMIT ?`;

/** berth reads one row more than a page, to know whether there is a next one. */
const pageRows = (limit: unknown) => Number(limit ?? 50) + 1;

const app = Fastify({ logger: false });
app.get('/', async () => ({ status: 'ok' }));
app.get<{ Querystring: { limit?: string } }>('/machines', async (request) => pool.query(MACHINES, [pageRows(request.query.limit)]));
app.get('/pool', async () => pool.query(POOL_COUNTS));
app.get<{ Querystring: { user: string } }>('/reservations', async (request) => pool.query(RESERVATIONS, [request.query.user, pageRows(50)]));
// Each VM's host status, as berth reads it: up when its heartbeat is from the last 30 s.
app.get('/vms', async () => pool.query(VMS, [sqlTime(new Date(Date.now() - 30_000)), pageRows(50)]));

const address = await app.listen({ port: 0, host: '127.0.0.1' });
console.log(`listening on ${address}`);
process.on('SIGTERM', () => void app.close().then(() => pool.end()).then(() => process.exit(0)));
