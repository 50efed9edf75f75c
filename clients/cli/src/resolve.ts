// People name things; the API takes ids. Users, images and VMs are found by name (or id),
// reservations by id or by the first characters of it that tables show.
import { unwrap } from '@berth/client';
import type { Context } from './context.js';
import { CliError, EXIT, usageError } from './errors.js';
import { listAll, PAGE_SIZE } from './http/lists.js';
import { CURRENT_STATUSES, statusFilter, type ReservationStatus } from './http/reservation.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isUuid = (text: string) => UUID.test(text);

const notFound = (what: string, name: string) => new CliError(`no ${what} named ${name}`, EXIT.refused);

export async function resolveUserId(ctx: Context, nameOrId: string): Promise<string> {
  if (isUuid(nameOrId)) return nameOrId;
  const users = await listAll(async (cursor) =>
    unwrap(await ctx.api.GET('/v1/users', { params: { query: { q: nameOrId, limit: PAGE_SIZE, cursor } } })),
  );
  const user = users.find((u) => u.username === nameOrId);
  if (!user) throw notFound('user', nameOrId);
  return user.id;
}

export async function resolveImage(ctx: Context, nameOrId: string) {
  if (isUuid(nameOrId)) return unwrap(await ctx.api.GET('/v1/images/{id}', { params: { path: { id: nameOrId } } }));
  const images = await listAll(async (cursor) => unwrap(await ctx.api.GET('/v1/images', { params: { query: { limit: PAGE_SIZE, cursor } } })));
  const image = images.find((i) => i.name === nameOrId);
  if (!image) throw notFound('image', nameOrId);
  return image;
}

export async function resolveVmId(ctx: Context, nameOrId: string): Promise<string> {
  if (isUuid(nameOrId)) return nameOrId;
  const vms = await listAll(async (cursor) => unwrap(await ctx.api.GET('/v1/vms', { params: { query: { limit: PAGE_SIZE, cursor } } })));
  const vm = vms.find((v) => v.name === nameOrId);
  if (!vm) throw notFound('VM', nameOrId);
  return vm.id;
}

/** A reservation's id from the whole id or a prefix of at least 4 characters of one of the caller's reservations. */
export async function resolveReservationId(ctx: Context, idOrPrefix: string): Promise<string> {
  if (isUuid(idOrPrefix)) return idOrPrefix.toLowerCase();
  const prefix = idOrPrefix.toLowerCase();
  if (!/^[0-9a-f-]{4,36}$/.test(prefix)) throw usageError(`${idOrPrefix} is not a reservation id (or its first 4+ characters)`);
  // The current ones first (queued, booked, active): that is what people name; older ones only when nothing current matches.
  const listed = (status?: ReservationStatus) =>
    listAll(async (cursor) =>
      unwrap(await ctx.api.GET('/v1/reservations', { params: { query: { limit: PAGE_SIZE, cursor, ...(status && { status: statusFilter(status) }) } } })),
    );
  for (const statuses of [CURRENT_STATUSES, [undefined]]) {
    const reservations = (await Promise.all(statuses.map((status) => listed(status)))).flat();
    const matches = reservations.filter((r) => r.id.startsWith(prefix));
    if (matches.length > 1) throw usageError(`${idOrPrefix} matches ${matches.length} reservations: give more of the id`);
    const [match] = matches;
    if (match) return match.id;
  }
  throw new CliError(`none of your reservations has an id starting with ${idOrPrefix}`, EXIT.refused);
}
