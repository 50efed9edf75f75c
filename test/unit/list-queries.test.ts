// The pure parts of the list read path: WHERE clauses and cursors in SQL, timestamps in
// either form, and the response serializer's treatment of nullable fields.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { page } from '../../src/http/common-schemas.js';
import { afterCursorSql, encodeCursor } from '../../src/infra/paging.js';
import { whereAll } from '../../src/infra/sql-where.js';
import { machine } from '../../src/modules/machines/schemas.js';
import { nullableAsTypeList, serializerCompiler } from '../../src/plugins/serializer.js';
import { isoOf } from '../../src/shared/timestamps.js';

describe('SQL for the lists', () => {
  it('ANDs the conditions whose filter was given, with their values in order', () => {
    expect(whereAll([])).toEqual({ sql: '', values: [] });
    expect(whereAll([null, false, undefined])).toEqual({ sql: '', values: [] });
    expect(whereAll([['status = ?', 'available'], null, ['a = ? OR b = ?', 1, 2]])).toEqual({
      sql: 'WHERE (status = ?) AND (a = ? OR b = ?)',
      values: ['available', 1, 2],
    });
  });

  it('puts a cursor in SQL with its time as stored (UTC text), and reads the same cursor from either timestamp form', () => {
    expect(afterCursorSql(undefined, 'r')).toBeNull();
    const at = new Date('2026-11-21T09:30:00.120Z');
    const id = '0b6f9a52-6a43-4c55-9f0e-3b0d7f1f2a10';
    expect(encodeCursor({ createdAt: at.toISOString(), id })).toBe(encodeCursor({ createdAt: at, id }));
    expect(afterCursorSql(encodeCursor({ createdAt: at, id }), 'r')).toEqual([
      'r.created_at < ? OR (r.created_at = ? AND r.id < ?)',
      '2026-11-21 09:30:00.120',
      '2026-11-21 09:30:00.120',
      id,
    ]);
  });

  it('reads timestamps as Prisma gives them and as the plain queries do', () => {
    const at = new Date('2026-11-21T09:30:00.120Z');
    expect(isoOf(at)).toBe('2026-11-21T09:30:00.120Z');
    expect(isoOf('2026-11-21T09:30:00.120Z')).toBe('2026-11-21T09:30:00.120Z');
  });
});

describe('the response serializer', () => {
  const jsonSchemaOf = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'output', target: 'draft-7', unrepresentable: 'any' });

  it('writes nullable fields as type lists, so no value is validated against a pattern at run time', () => {
    const schema = nullableAsTypeList(jsonSchemaOf(page(machine)));
    expect(JSON.stringify(schema)).not.toContain('anyOf');
    const fields = (schema as { definitions: { Machine: { properties: Record<string, { type: unknown }> } } }).definitions.Machine.properties;
    expect(fields.reservation_id!.type).toEqual(['string', 'null']);
    expect(fields.last_checked_at!.type).toEqual(['string', 'null']);
    // A union that is not "something or null" is left as it is.
    const union = { anyOf: [{ type: 'string' }, { type: 'integer' }] };
    expect(nullableAsTypeList(union)).toEqual(union);
  });

  it('writes what JSON.stringify writes, without the fields the schema does not declare', () => {
    const write = serializerCompiler({ schema: page(machine), method: 'GET', url: '/v1/machines', httpStatus: '200' });
    // The schema's own example, and the same with the other nullable fields the other way round.
    const item = (machine.meta() as { examples: Record<string, unknown>[] }).examples[0]!;
    const body = { items: [item, { ...item, reservation_id: '3f1e6a4b-8c2d-4e5f-9a0b-1c2d3e4f5a6b', last_checked_at: null }], next_cursor: null };
    expect(JSON.parse(write({ ...body, items: body.items.map((i) => ({ ...i, credential: 'sealed' })) }))).toEqual(body);
  });
});
