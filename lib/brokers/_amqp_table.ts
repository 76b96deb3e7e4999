/**
 * Converts Celery headers to and from the AMQP field tables that amqplib encodes, so that
 * py-amqp (Python Celery's client) reads exactly what celeriac meant.
 *
 * amqplib guesses a tag from each JS number: `b` for -128..127 and `s` for 16-bit values. py-amqp
 * reads `b` as *unsigned* and `s` as a *short string* (RabbitMQ's errata and py-amqp disagree
 * with the spec here), so `retries: 300` would arrive corrupted. Every number is therefore
 * given an explicit type with amqplib's `{"!": type, value}` form: `I` (signed 32-bit) as
 * py-amqp writes ints, `l` (64-bit) for larger non-negative ints (py-amqp reads it unsigned,
 * which is right for them), `d` (double) for everything else. `null` goes out as `V` and arrays
 * as `A`, which amqplib already does. A plain object that happens to own a `"!"` key is wrapped
 * so that amqplib does not mistake it for a typed value.
 *
 * @module
 */

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;

/** A value amqplib encodes with the type we chose. */
type Typed = { "!": string; value: unknown };

/**
 * Prepares a header value for amqplib's field-table encoder.
 *
 * @param value A JSON-like value (Dates become ISO strings, `undefined` is dropped by amqplib).
 * @returns The same value with every number explicitly typed.
 */
export function toFieldValue(value: unknown): unknown {
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) {
      return { "!": "int", value } satisfies Typed;
    }
    if (Number.isSafeInteger(value) && value > INT32_MAX) {
      return { "!": "int64", value } satisfies Typed;
    }
    return { "!": "double", value } satisfies Typed;
  }
  if (typeof value === "bigint") return toFieldValue(Number(value));
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toFieldValue);
  if (value instanceof Uint8Array) return value;
  if (value !== null && typeof value === "object") {
    const table = toFieldTable(value as Record<string, unknown>);
    return Object.hasOwn(table, "!") ? { "!": "object", value: table } : table;
  }
  return value;
}

/**
 * Prepares a header table for amqplib.
 *
 * @param headers The headers.
 * @returns A table whose numbers are explicitly typed.
 */
export function toFieldTable(headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (value !== undefined) out[key] = toFieldValue(value);
  }
  return out;
}

const isTyped = (v: object): v is Typed =>
  Object.hasOwn(v, "!") && Object.hasOwn(v, "value") && Object.keys(v).length === 2;

/**
 * Turns a table decoded by amqplib back into plain JSON-like values: timestamps (`T`, which
 * py-amqp writes for `datetime`) become ISO strings, decimals numbers, byte arrays text.
 *
 * @param value A decoded value.
 * @returns A plain value.
 */
export function fromFieldValue(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  if (Array.isArray(value)) return value.map(fromFieldValue);
  if (isTyped(value)) {
    const inner = value.value as { places?: number; digits?: number } | number;
    if (value["!"] === "timestamp") return new Date(Number(inner) * 1000).toISOString();
    if (value["!"] === "decimal" && typeof inner === "object") {
      return (inner.digits ?? 0) / 10 ** (inner.places ?? 0);
    }
    return fromFieldValue(value.value);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = fromFieldValue(v);
  return out;
}

/**
 * Turns a decoded header table back into plain values.
 *
 * @param headers The table amqplib decoded, or `undefined`.
 * @returns Plain headers.
 */
export function fromFieldTable(headers: Record<string, unknown> | undefined): Record<
  string,
  unknown
> {
  return headers ? fromFieldValue(headers) as Record<string, unknown> : {};
}
