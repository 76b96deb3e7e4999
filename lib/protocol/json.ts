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
      return inner;
    case "bytes":
    case "base64":
      return typeof inner === "string" && type === "base64"
        ? Uint8Array.from(atob(inner), (c) => c.charCodeAt(0))
        : inner;
    default:
      throw new MessageDecodeError(`Unsupported kombu JSON type tag ${JSON.stringify(type)}`);
  }
}

/**
 * Parses kombu-dialect JSON.
 *
 * @param text The JSON text.
 * @returns The value, with kombu type tags replaced by plain values.
 * @throws {MessageDecodeError} When the text is not JSON or holds an unknown type tag.
 * @example
 * ```ts
 * import { parseJson } from "./json.ts";
 * console.assert(parseJson('{"__type__":"uuid","__value__":"x"}') === "x");
 * ```
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text, (_key, value) => reviveTag(value));
  } catch (cause) {
    if (cause instanceof MessageDecodeError) throw cause;
    throw new MessageDecodeError(`Body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Serializes a value as JSON that Python's kombu reads: `Date` becomes an ISO string,
 * `bigint` a number, `undefined` in arrays `null`, `Map`/`Set` an object/array.
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
    if (typeof v === "bigint") return Number(v);
    if (v instanceof Map) return Object.fromEntries(v);
    if (v instanceof Set) return [...v];
    if (v instanceof Uint8Array) {
      return { __type__: "base64", __value__: btoa(String.fromCharCode(...v)) };
    }
    return v;
  }) ?? "null";
}
