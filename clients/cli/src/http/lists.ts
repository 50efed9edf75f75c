// berth's lists come in pages (`next_cursor`); commands show whole lists.
import { CliError, EXIT } from '../errors.js';

export const PAGE_SIZE = 200;
/** Beyond this a command asks for a narrower filter instead of pulling a whole database. */
const MAX_ITEMS = 20_000;

export async function listAll<T>(page: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor: string | null }>): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const next = await page(cursor);
    items.push(...next.items);
    cursor = next.next_cursor ?? undefined;
    if (items.length > MAX_ITEMS) throw new CliError(`more than ${MAX_ITEMS} items: narrow the list with a filter`, EXIT.failed);
  } while (cursor);
  return items;
}
