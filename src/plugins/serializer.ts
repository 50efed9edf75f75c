// Responses are serialized by fast-json-stringify, compiled once per route from the JSON
// Schema of the route's zod response schema (the same one the OpenAPI document shows).
// Like zod's own serializer it writes only declared fields, so a row with extra columns
// (a password hash, say) cannot leak; unlike it, it does not re-validate every response,
// which costs a hot route like /v1/whoami a fifth of its throughput.
import type { FastifySerializerCompiler } from 'fastify';
import fastJson from 'fast-json-stringify';
import { z } from 'zod';

type JsonSchema = Record<string, unknown>;

const isSchema = (v: unknown): v is JsonSchema => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * zod writes a nullable field as `anyOf: [T, {type: null}]`, and fast-json-stringify writes
 * an anyOf by running each branch's ajv validator on the value: for a nullable uuid or
 * timestamp, a regular expression per field per row (a fifth of a 20-machine list). The
 * same schema with the type list `[T's type, "null"]` is written after a typeof check.
 */
export function nullableAsTypeList(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(nullableAsTypeList);
  if (!isSchema(schema)) return schema;
  const branches = schema.anyOf;
  if (Array.isArray(branches) && branches.length === 2) {
    const nullAt = branches.findIndex((b) => isSchema(b) && b.type === 'null' && Object.keys(b).length === 1);
    const other = branches[1 - nullAt];
    if (nullAt !== -1 && isSchema(other) && typeof other.type === 'string') {
      const { anyOf: _, ...rest } = schema;
      return { ...rest, ...(nullableAsTypeList(other) as JsonSchema), type: [other.type, 'null'] };
    }
  }
  return Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, nullableAsTypeList(value)]));
}

export const serializerCompiler: FastifySerializerCompiler<unknown> = ({ schema }) => {
  const jsonSchema = schema instanceof z.ZodType ? z.toJSONSchema(schema, { io: 'output', target: 'draft-7', unrepresentable: 'any' }) : schema;
  return fastJson(nullableAsTypeList(jsonSchema) as Parameters<typeof fastJson>[0]) as (data: unknown) => string;
};
