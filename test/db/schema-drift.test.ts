// Nothing generates migration SQL from schema.prisma on these machines, so this test is
// what keeps them honest: every model, column (type, nullability, default), index,
// unique constraint and foreign key in schema.prisma must exist, exactly, in a database
// built by the migrations — and the database must have nothing the schema lacks.
import { readFileSync } from 'node:fs';
import internals from '@prisma/internals';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedDatabase, rootQuery } from '../helpers/db.js';

const { getDMMF } = internals;
type DMMF = Awaited<ReturnType<typeof getDMMF>>;

let dmmf: DMMF;
let db: Awaited<ReturnType<typeof createMigratedDatabase>>;
const q = <T>(sql: string, params: unknown[] = []) => rootQuery<T[]>(sql, params);

beforeAll(async () => {
  dmmf = await getDMMF({ datamodel: readFileSync('prisma/schema.prisma', 'utf8') });
  db = await createMigratedDatabase('drift');
});
afterAll(() => db.drop());

/** The MariaDB column type Prisma would create for a field. */
function expectedColumnType(field: DMMF['datamodel']['models'][number]['fields'][number]): string {
  const enums = dmmf.datamodel.enums;
  if (field.kind === 'enum') {
    const e = enums.find((x) => x.name === field.type)!;
    return `enum(${e.values.map((v) => `'${v.dbName ?? v.name}'`).join(',')})`;
  }
  const native = field.nativeType as [string, string[]] | null | undefined;
  if (native) {
    const [name, args] = native;
    const map: Record<string, string> = { Char: 'char', VarChar: 'varchar', DateTime: 'datetime', Text: 'text', Int: 'int' };
    return `${map[name] ?? name.toLowerCase()}${args.length ? `(${args.join(',')})` : ''}`;
  }
  // MariaDB stores JSON as longtext with a json_valid check.
  const defaults: Record<string, string> = { String: 'varchar(191)', Boolean: 'tinyint(1)', Int: 'int(11)', DateTime: 'datetime(3)', BigInt: 'bigint(20)', Json: 'longtext' };
  return defaults[field.type] ?? field.type;
}

describe('migrated database vs schema.prisma', () => {
  it('has exactly the tables of the schema (plus Prisma’s migration history and the migration lock)', async () => {
    const tables = (await q<{ t: string }>('SELECT table_name AS t FROM information_schema.tables WHERE table_schema = ?', [db.target.database])).map((r) => r.t);
    const expected = dmmf.datamodel.models.map((m) => m.dbName ?? m.name);
    // _berth_migration_lock: the lease row the migration runner takes before migrating
    // (src/infra/migration-lease.ts), made by the runner itself, as _prisma_migrations is.
    expect(tables.sort()).toEqual([...expected, '_prisma_migrations', '_berth_migration_lock'].sort());
  });

  it('has every column with its type, nullability and default, and no others', async () => {
    for (const model of dmmf.datamodel.models) {
      const table = model.dbName ?? model.name;
      const columns = await q<{ name: string; type: string; nullable: string; dflt: string | null }>(
        `SELECT column_name AS name, column_type AS type, is_nullable AS nullable, column_default AS dflt
           FROM information_schema.columns WHERE table_schema = ? AND table_name = ?`,
        [db.target.database, table],
      );
      const scalars = model.fields.filter((f) => f.kind !== 'object');
      expect(columns.map((c) => c.name).sort(), table).toEqual(scalars.map((f) => f.dbName ?? f.name).sort());
      for (const field of scalars) {
        const col = columns.find((c) => c.name === (field.dbName ?? field.name))!;
        const where = `${table}.${col.name}`;
        expect(col.type, where).toBe(expectedColumnType(field));
        expect(col.nullable, where).toBe(field.isRequired ? 'NO' : 'YES');
        const def = field.default as { name?: string } | string | boolean | undefined;
        if (def && typeof def === 'object' && def.name === 'now') expect(col.dflt, where).toBe('current_timestamp(3)');
        else if (typeof def === 'boolean') expect(col.dflt, where).toBe(def ? '1' : '0');
        // The DMMF gives a BigInt's default as a string (it may not fit a JS number); the database shows it unquoted.
        else if (typeof def === 'string' && field.type === 'BigInt') expect(col.dflt, where).toBe(def);
        else if (typeof def === 'string') expect(col.dflt, where).toBe(`'${def}'`);
        else if (typeof def === 'number') expect(col.dflt, where).toBe(String(def));
        else expect(col.dflt === null || col.dflt === 'NULL', `${where} has no database default`).toBe(true);
      }
    }
  });

  it('has every primary key, unique constraint and index, and no others', async () => {
    for (const model of dmmf.datamodel.models) {
      const table = model.dbName ?? model.name;
      const col = (name: string) => model.fields.find((f) => f.name === name)!.dbName ?? name;
      const rows = await q<{ name: string; uniq: number; seq: number; col: string }>(
        `SELECT index_name AS name, non_unique = 0 AS uniq, seq_in_index AS seq, column_name AS col
           FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? ORDER BY index_name, seq_in_index`,
        [db.target.database, table],
      );
      const actual = new Map<string, { unique: boolean; cols: string[] }>();
      for (const r of rows) {
        const e = actual.get(r.name) ?? { unique: Number(r.uniq) === 1, cols: [] };
        e.cols.push(r.col);
        actual.set(r.name, e);
      }
      const expected = dmmf.datamodel.indexes
        .filter((i) => i.model === model.name)
        .map((i) => ({ unique: i.type !== 'normal', cols: i.fields.map((f) => col(f.name)) }));
      // Foreign keys need an index on their columns; Prisma relies on the @@index we declare.
      const describe = (x: { unique: boolean; cols: string[] }) => `${x.unique ? 'unique' : 'index'}(${x.cols.join(',')})`;
      expect([...actual.values()].map(describe).sort(), table).toEqual(expected.map(describe).sort());
    }
  });

  it('has every foreign key with its referential actions', async () => {
    const fks = await q<{ tbl: string; col: string; ref: string; refcol: string; del: string; upd: string }>(
      `SELECT k.table_name AS tbl, k.column_name AS col, k.referenced_table_name AS ref, k.referenced_column_name AS refcol,
              r.delete_rule AS del, r.update_rule AS upd
         FROM information_schema.key_column_usage k
         JOIN information_schema.referential_constraints r
           ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name
        WHERE k.table_schema = ? AND k.referenced_table_name IS NOT NULL`,
      [db.target.database],
    );
    const expected: string[] = [];
    for (const model of dmmf.datamodel.models) {
      for (const f of model.fields.filter((x) => x.kind === 'object' && (x.relationFromFields?.length ?? 0) > 0)) {
        const target = dmmf.datamodel.models.find((m) => m.name === f.type)!;
        const from = f.relationFromFields!.map((n) => model.fields.find((x) => x.name === n)!.dbName ?? n);
        const to = f.relationToFields!.map((n) => target.fields.find((x) => x.name === n)!.dbName ?? n);
        const onDelete = (f.relationOnDelete ?? 'Restrict').replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase();
        expected.push(`${model.dbName}.${from.join(',')} -> ${target.dbName}.${to.join(',')} ON DELETE ${onDelete} ON UPDATE CASCADE`);
      }
    }
    const actual = fks.map((k) => `${k.tbl}.${k.col} -> ${k.ref}.${k.refcol} ON DELETE ${k.del} ON UPDATE ${k.upd}`);
    expect(actual.sort()).toEqual(expected.sort());
  });
});
