/**
 * celeriac's one JSON codec, kombu's dialect, used for every value that crosses the wire (task
 * args and kwargs, results, `updateState` metas, signatures).
 *
 * Decoding: integers beyond 2^53 come back as `bigint`, exact; the `{"__type__", "__value__"}`
 * tags that kombu 5.3+ writes are read back.
 *
 * Encoding, one rule for values JSON cannot hold as they are:
 * - `bigint` is written as the same JSON integer (Python reads an `int`);
 * - `Date` is written as kombu 5.2's `JSONEncoder` writes a UTC `datetime`:
 *   `datetime.isoformat()` with `+00:00` replaced by `Z`, e.g. `"2026-11-21T01:19:41.338000Z"`
 *   (microseconds omitted when zero, as Python does); Celery 5.2 reads it as that string;
 * - `undefined` is written as `null` (in arrays and as an object value alike);
 * - `Uint8Array` is written as kombu's `{"__type__": "base64", "__value__": ...}` tag;
 * - an object with a `toJSON()` method is written as what it returns (as `JSON.stringify` does);
 * - `Map`, `Set`, functions, symbols, other class instances, `NaN`, `±Infinity`, a value that
 *   contains itself, and nesting deeper than {@linkcode MAX_ENCODE_DEPTH} throw an
 *   {@linkcode EncodeError} (Celery's `kombu.exceptions.EncodeError`) that names the path of
 *   the offending value, e.g. `result[2].foo is a Map`. Nothing is silently changed.
 *
 * @module
 */

import { EncodeError, MessageDecodeError } from "../errors.ts";

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
      throw new MessageDecodeError(
        `Unsupported kombu JSON type tag ${
          typeof type === "string" ? JSON.stringify(type) : typeof type
        }`,
      );
  }
}

// The source text of a primitive, which V8 hands to a reviver (TC39 "JSON.parse source text
// access"); TypeScript's lib does not declare it yet.
interface ReviverContext {
  source?: string;
}

type Reviver = (key: string, value: unknown, context?: ReviverContext) => unknown;

const INTEGER = /^-?\d+$/;
// A kombu tag key (or an escaped ASCII letter that might spell one), or 16+ digits in a row:
// the only texts whose plain JSON.parse may differ from the revived one (an unsafe integer has
// at least 16 digits).
const NEEDS_REVIVER = /__type__|\\u00[5-7][0-9a-fA-F]|\d{16}/;

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
  // A reviver makes V8 call back into JS for every value (and keep source positions): only
  // pay for it when the text may hold a kombu tag or an integer JSON.parse would round.
  const reviver = NEEDS_REVIVER.test(text);
  try {
    if (!reviver) return JSON.parse(text);
    return (JSON.parse as (text: string, reviver: Reviver) => unknown)(text, revive);
  } catch (cause) {
    if (cause instanceof MessageDecodeError) throw cause;
    // JSON.parse itself takes any depth, but V8 walks a reviver recursively: past a few
    // thousand levels, revive without the stack instead.
    if (reviver && cause instanceof RangeError) return parseDeep(text);
    throw new MessageDecodeError(`Body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

// parseJson for text nested too deeply for a reviver: unsafe integer literals are first
// rewritten as marked strings (one linear scan that skips string literals), the text is parsed
// without a reviver, then one iterative walk turns the marks into bigints and revives the
// kombu tags, innermost first, as the reviver would.
function parseDeep(text: string): unknown {
  const mark = `\u0000celeriac-int-${crypto.randomUUID()}:`;
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip a string literal; a malformed one is left for JSON.parse to report.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < text.length) {
        const d = text.charCodeAt(end);
        if (
          !((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b ||
            d === 0x2d)
        ) break;
        end++;
      }
      const literal = text.slice(i, end);
      if (literal.length >= 16 && INTEGER.test(literal) && !Number.isSafeInteger(Number(literal))) {
        parts.push(text.slice(from, i), `"${mark.replace("\u0000", "\\u0000")}${literal}"`);
        from = end;
      }
      i = end - 1;
    }
  }
  parts.push(text.slice(from));
  let root: unknown;
  try {
    root = JSON.parse(parts.join(""));
  } catch (cause) {
    throw new MessageDecodeError(`Body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const fix = (value: unknown): unknown =>
    typeof value === "string" && value.startsWith(mark) ? BigInt(value.slice(mark.length)) : value;
  // Post-order: a container is revived after its children, as JSON.parse's reviver does.
  const stack: { node: Record<string, unknown> | unknown[]; done: boolean }[] = [];
  const holder = { "": root };
  const push = (value: unknown) => {
    if (value !== null && typeof value === "object") {
      stack.push({ node: value as Record<string, unknown>, done: false });
    }
  };
  push(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const node = top.node as Record<string, unknown>;
    if (!top.done) {
      top.done = true;
      for (const key of Object.keys(node)) push(node[key]);
      continue;
    }
    stack.pop();
    for (const key of Object.keys(node)) {
      const value = node[key];
      const next = value !== null && typeof value === "object" ? reviveTag(value) : fix(value);
      // defineProperty, not assignment: a "__proto__" key must stay an own property.
      if (next !== value) {
        Object.defineProperty(node, key, {
          value: next,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
    }
  }
  const value = holder[""];
  return value !== null && typeof value === "object" ? reviveTag(value) : fix(value);
}

/**
 * The deepest nesting {@linkcode stringifyJson} writes; deeper values throw an
 * {@linkcode EncodeError}. (Python's `json` reads about 1,000 levels.)
 */
export const MAX_ENCODE_DEPTH = 10_000;

/**
 * Serializes a value as kombu-dialect JSON, by the rule in this module's doc: `bigint` as the
 * same JSON integer, `Date` as kombu's datetime text, `undefined` as `null`, `Uint8Array` as
 * kombu's base64 tag; anything JSON cannot hold throws an {@linkcode EncodeError} naming where.
 *
 * Plain JSON data (the usual case) goes straight to `JSON.stringify`, after one cheap walk that
 * checks it holds nothing the rule converts or refuses; only other values take the slower,
 * iterative encoder, which takes any depth up to {@linkcode MAX_ENCODE_DEPTH} without
 * overflowing the stack.
 *
 * @param value The value.
 * @param path How the value is named in an error: `args`, `result`, ...; `""` names the
 *   fields of an object alone (a meta's `result[2].foo`).
 * @returns JSON text.
 * @throws {EncodeError} For a value JSON cannot hold (see above).
 * @example
 * ```ts
 * import { stringifyJson } from "./json.ts";
 * console.assert(stringifyJson([10n ** 23n, undefined]) === "[100000000000000000000000,null]");
 * console.assert(stringifyJson(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6))) ===
 *   '"2026-01-02T03:04:05.006000Z"');
 * try {
 *   stringifyJson({ foo: new Map() }, "result");
 * } catch (e) {
 *   console.assert((e as Error).message.startsWith("result.foo is a Map"));
 * }
 * ```
 */
export function stringifyJson(value: unknown, path = "value"): string {
  if (isPlain(value, 0)) return JSON.stringify(value);
  return encodeSlow(value, path);
}

// Whether JSON.stringify writes `value` by the rule, with no replacer: strings, booleans, finite
// numbers, null, arrays without holes, and plain objects without `toJSON`, nested at most 64
// deep. Anything else (including deeper nesting and cycles) takes encodeSlow.
function isPlain(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value);
    case "object":
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (depth > 64) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isPlain(value[i], depth + 1)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const object = value as Record<string, unknown>;
  if ("toJSON" in object) return false;
  for (const key in object) if (!isPlain(object[key], depth + 1)) return false;
  return true;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

// kombu 5.2's JSONEncoder.default for a UTC datetime: isoformat(), "+00:00" -> "Z".
function kombuDatetime(date: Date): string | undefined {
  const year = date.getUTCFullYear();
  if (Number.isNaN(year) || year < 1 || year > 9999) return undefined;
  const ms = date.getUTCMilliseconds();
  return `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}T${
    pad(date.getUTCHours())
  }:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}${
    ms === 0 ? "" : `.${pad(ms, 3)}000`
  }Z`;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

interface Frame {
  value: object;
  /** Object keys, or null for an array. */
  keys: string[] | null;
  /** The next child; the one being written is `index - 1`. */
  index: number;
}

function childPath(frame: Frame): string {
  const i = frame.index - 1;
  if (frame.keys === null) return `[${i}]`;
  const key = frame.keys[i]!;
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

// The path to the child being written at `depth`; a deep one keeps its first and last steps.
function pathOf(root: string, stack: Frame[], depth = stack.length): string {
  let path = root;
  for (let i = 0; i < depth; i++) {
    if (depth > 16 && i === 6) {
      path += `...(${depth - 12} levels)...`;
      i = depth - 7;
      continue;
    }
    path += childPath(stack[i]!);
  }
  return path;
}

function describe(value: unknown): string {
  switch (typeof value) {
    case "function":
      return `a function${value.name ? ` (${value.name})` : ""}`;
    case "symbol":
      return "a symbol";
    case "number":
      return Number.isNaN(value) ? "NaN" : String(value);
  }
  if (value instanceof Map) return "a Map (convert it, e.g. with Object.fromEntries(map))";
  if (value instanceof Set) return "a Set (convert it, e.g. with [...set])";
  if (value instanceof Date) return "a Date outside years 1-9999 or invalid";
  const proto = Object.getPrototypeOf(value);
  const name = (proto?.constructor as { name?: unknown } | undefined)?.name;
  return typeof name === "string" && name
    ? `an instance of ${name} (only plain objects and arrays are JSON)`
    : "an object with a custom prototype";
}

// The iterative encoder: an explicit stack instead of recursion, so depth costs heap, not stack.
function encodeSlow(root: unknown, rootPath: string): string {
  const out: string[] = [];
  const stack: Frame[] = [];
  const open = new Set<object>();
  const fail = (reason: string): never => {
    let path = pathOf(rootPath, stack);
    // An unnamed root names its fields alone: `result[2].foo` in a meta.
    if (rootPath === "") path = path.startsWith(".") ? path.slice(1) : path || "value";
    throw new EncodeError(`${path} ${reason}, which JSON cannot hold`, { path });
  };
  // Writes a value, or opens a container frame for it.
  const write = (input: unknown, key: string): void => {
    let value = input;
    if (
      value !== null && typeof value === "object" && !(value instanceof Date) &&
      typeof (value as { toJSON?: unknown }).toJSON === "function"
    ) {
      value = (value as { toJSON(key: string): unknown }).toJSON(key);
    }
    switch (typeof value) {
      case "string":
        out.push(JSON.stringify(value));
        return;
      case "boolean":
        out.push(value ? "true" : "false");
        return;
      case "number":
        if (!Number.isFinite(value)) fail(`is ${describe(value)}`);
        out.push(JSON.stringify(value));
        return;
      case "bigint":
        out.push(value.toString());
        return;
      case "undefined":
        out.push("null");
        return;
      case "function":
      case "symbol":
        return fail(`is ${describe(value)}`);
    }
    if (value === null) {
      out.push("null");
      return;
    }
    const object = value as object;
    if (object instanceof Date) {
      const text = kombuDatetime(object);
      if (text === undefined) fail(`is ${describe(object)}`);
      out.push(`"${text}"`);
      return;
    }
    if (object instanceof Uint8Array) {
      out.push(`{"__type__":"base64","__value__":"${object.toBase64()}"}`);
      return;
    }
    let keys: string[] | null = null;
    if (!Array.isArray(object)) {
      const proto = Object.getPrototypeOf(object);
      if (proto !== Object.prototype && proto !== null) fail(`is ${describe(object)}`);
      keys = Object.keys(object);
    }
    if (open.has(object)) {
      const at = stack.findIndex((f) => f.value === object);
      fail(`refers back to ${pathOf(rootPath, stack, at)} (a cycle)`);
    }
    if (stack.length >= MAX_ENCODE_DEPTH) {
      fail(`is nested more than ${MAX_ENCODE_DEPTH} levels deep`);
    }
    open.add(object);
    stack.push({ value: object, keys, index: 0 });
    out.push(keys === null ? "[" : "{");
  };
  write(root, "");
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    const length = frame.keys === null ? (frame.value as unknown[]).length : frame.keys.length;
    if (frame.index >= length) {
      out.push(frame.keys === null ? "]" : "}");
      stack.pop();
      open.delete(frame.value);
      continue;
    }
    const i = frame.index++;
    if (i > 0) out.push(",");
    if (frame.keys === null) {
      write((frame.value as unknown[])[i], String(i));
    } else {
      const key = frame.keys[i]!;
      out.push(JSON.stringify(key), ":");
      write((frame.value as Record<string, unknown>)[key], key);
    }
  }
  return out.join("");
}

/**
 * The value as the wire gives it back, by the same rule as {@linkcode stringifyJson}: what a
 * backend that keeps JavaScript values (memory, Deno KV) stores, so that a result reads the
 * same from every backend (`bigint` stays exact, a `Date` becomes kombu's datetime text,
 * `undefined` becomes `null`), and a `Map` fails with the same {@linkcode EncodeError} as on
 * Redis. Plain JSON data is returned as is, without a copy.
 *
 * @param value The value.
 * @param path How the value is named in an error (see {@linkcode stringifyJson}).
 * @returns The value, or a converted copy.
 * @throws {EncodeError} For a value JSON cannot hold.
 * @example
 * ```ts
 * import { toJsonValue } from "./json.ts";
 * const meta: { result: unknown[] } = { result: [new Date(0), undefined, 2n ** 64n] };
 * const stored = toJsonValue(meta, "");
 * console.assert(stored.result[0] === "1970-01-01T00:00:00Z" && stored.result[1] === null);
 * console.assert(stored.result[2] === 2n ** 64n);
 * ```
 */
export function toJsonValue<T>(value: T, path = "value"): T {
  if (isPlain(value, 0)) return value;
  return parseJson(encodeSlow(value, path)) as T;
}
