/**
 * kombu's JSON dialect: dates are written as ISO-8601 strings, and the `{"__type__",
 * "__value__"}` tags that kombu 5.3+ writes are read back.
 *
 * @module
 */

import { MessageDecodeError } from "../errors.ts";

function reviveTag(value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  if (keys.length !== 2 || !("__type__" in value) || !("__value__" in value)) return value;
  const { __type__: type, __value__: inner } = value as { __type__: unknown; __value__: unknown };
  switch (type) {
    case "datetime":
    case "date":
    case "time":
    case "decimal":
    case "uuid":
    case "bytes":
      return inner;
    case "base64":
      if (typeof inner !== "string") {
        throw new MessageDecodeError("kombu base64 value must be a string");
      }
      try {
        return Uint8Array.fromBase64(inner);
      } catch (cause) {
        throw new MessageDecodeError("kombu base64 value is not valid base64", { cause });
      }
    default:
      throw new MessageDecodeError(`Unsupported kombu JSON type tag ${JSON.stringify(type)}`);
  }
}

// The source text of a primitive, which V8 hands to a reviver (TC39 "JSON.parse source text
// access"); TypeScript's lib does not declare it yet.
interface ReviverContext {
  source?: string;
}

type Reviver = (key: string, value: unknown, context?: ReviverContext) => unknown;

const INTEGER = /^-?\d+$/;

// Python ints are unbounded: an integer JSON.parse would round comes back as a bigint instead.
function revive(_key: string, value: unknown, context?: ReviverContext): unknown {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) && context?.source && INTEGER.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  }
  return reviveTag(value);
}

const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/**
 * Parses kombu-dialect JSON. Integers beyond `Number.MAX_SAFE_INTEGER` come back as `bigint`,
 * exact, since Python ints are unbounded.
 *
 * @param text The JSON text.
 * @returns The value, with kombu type tags replaced by plain values (`base64` by a
 *   `Uint8Array`, the others by their string).
 * @throws {MessageDecodeError} When the text is not JSON or holds an unknown type tag.
 * @example
 * ```ts
 * import { parseJson } from "./json.ts";
 * console.assert(parseJson('{"__type__":"uuid","__value__":"x"}') === "x");
 * ```
 */
export function parseJson(text: string): unknown {
  try {
    return (JSON.parse as (text: string, reviver: Reviver) => unknown)(text, revive);
  } catch (cause) {
    if (cause instanceof MessageDecodeError) throw cause;
    throw new MessageDecodeError(`Body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Serializes a value as JSON that Python's kombu reads: `Date` becomes an ISO string,
 * `bigint` an exact JSON integer, `undefined` in arrays `null`, `Map`/`Set` an object/array.
 *
 * @param value The value.
 * @returns JSON text.
 * @example
 * ```ts
 * import { stringifyJson } from "./json.ts";
 * console.assert(stringifyJson([1, new Set([2])]) === "[1,[2]]");
 * ```
 */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return rawJson(v.toString());
    if (v instanceof Map) return Object.fromEntries(v);
    if (v instanceof Set) return [...v];
    if (v instanceof Uint8Array) {
      return { __type__: "base64", __value__: v.toBase64() };
    }
    return v;
  }) ?? "null";
}
