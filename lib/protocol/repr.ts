/**
 * A bounded, Python-style `repr`, in the spirit of Python's `reprlib` and Celery's
 * `celery.utils.saferepr`: what the `argsrepr`/`kwargsrepr` headers, task events and error
 * messages show of untrusted data. Every limit holds whatever the input: nesting past
 * `maxDepth` shows as `[...]`/`{...}`, a container shows at most `maxItems` items, a string at
 * most `maxString` characters, the whole text at most `maxLength`, and a value that contains
 * itself shows `...` where it recurs. The walk stops as soon as the text is long enough, so a
 * 50 MB argument costs no more than a small one. Control characters are escaped as Python does
 * (`'a\nb'`), so a repr is safe to log.
 *
 * @module
 */

/** Options of {@linkcode boundedRepr}. */
export interface ReprOptions {
  /**
   * Containers nested deeper than this show as `[...]`, `(...)` or `{...}`. The outermost
   * value is level 1; Celery's `saferepr` shows 3 levels.
   * @default {3}
   */
  maxDepth?: number;
  /**
   * Items shown per list, tuple, mapping or set; the rest is `...`.
   * @default {100}
   */
  maxItems?: number;
  /**
   * Characters shown of one string (or bytes); longer ones end in `...` inside the quotes.
   * @default {1024}
   */
  maxString?: number;
  /**
   * The most characters of the whole text; a longer repr is cut and ends in `...`.
   * @default {1024}
   */
  maxLength?: number;
  /**
   * Render an outermost array as a Python tuple: `(1,)`.
   * @default {false}
   */
  tuple?: boolean;
}

// Python's repr of a str: single quotes unless the text holds ' and no ", escapes for the
// backslash, the quote and every non-printable character.
// deno-lint-ignore no-control-regex -- finding control characters is the point
const NEEDS_ESCAPE = /['"\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]/;

function reprString(text: string, maxString: number): string {
  const cut = text.length > maxString;
  const shown = cut ? text.slice(0, maxString) : text;
  if (!NEEDS_ESCAPE.test(shown)) return `'${shown}${cut ? "..." : ""}'`;
  const quote = shown.includes("'") && !shown.includes('"') ? '"' : "'";
  let out = quote;
  for (let i = 0; i < shown.length; i++) {
    const c = shown.charCodeAt(i);
    if (c === 0x5c) out += "\\\\";
    else if (c === quote.charCodeAt(0)) out += "\\" + quote;
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) out += "\\x" + c.toString(16).padStart(2, "0");
    else if (c === 0x2028 || c === 0x2029 || (c >= 0xd800 && c <= 0xdfff && !paired(shown, i))) {
      out += "\\u" + c.toString(16).padStart(4, "0");
    } else out += shown[i];
  }
  return out + (cut ? "..." : "") + quote;
}

// Whether the surrogate at i is half of a well-formed pair (then the pair prints as is).
function paired(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c <= 0xdbff) {
    const next = text.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff;
  }
  const prev = text.charCodeAt(i - 1);
  return prev >= 0xd800 && prev <= 0xdbff;
}

function reprBytes(bytes: Uint8Array, maxString: number): string {
  let out = "b'";
  const n = Math.min(bytes.length, maxString);
  for (let i = 0; i < n; i++) {
    const c = bytes[i]!;
    if (c === 0x5c) out += "\\\\";
    else if (c === 0x27) out += "\\'";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c < 0x20 || c >= 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += String.fromCharCode(c);
  }
  return out + (bytes.length > n ? "..." : "") + "'";
}

function reprNumber(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (n === Infinity) return "inf";
  if (n === -Infinity) return "-inf";
  return String(n);
}

class Budget {
  text = "";
  constructor(readonly limit: number) {}
  get full(): boolean {
    return this.text.length > this.limit;
  }
  add(part: string): void {
    // Never hold much more than the limit: a 50 MB string is cut before it is copied.
    if (this.full) return;
    this.text += part.length > this.limit + 1 ? part.slice(0, this.limit + 1) : part;
  }
}

interface Limits {
  maxDepth: number;
  maxItems: number;
  maxString: number;
}

const DEFAULT_LIMITS: Limits = { maxDepth: 3, maxItems: 100, maxString: 1024 };

// Recursion is bounded by maxDepth (clamped), so it cannot overflow the stack.
function walk(
  value: unknown,
  level: number,
  tuple: boolean,
  limits: Limits,
  out: Budget,
  seen: object[],
): void {
  if (out.full) return;
  switch (typeof value) {
    case "undefined":
      return out.add("None");
    case "boolean":
      return out.add(value ? "True" : "False");
    case "number":
      return out.add(reprNumber(value));
    case "bigint":
      return out.add(value.toString());
    case "string":
      return out.add(reprString(value, limits.maxString));
    case "symbol":
      return out.add(`<symbol ${reprString(value.description ?? "", limits.maxString)}>`);
    case "function":
      return out.add(`<function ${value.name || "<anonymous>"}>`);
  }
  if (value === null) return out.add("None");
  const object = value as object;
  if (object instanceof Date) {
    return out.add(
      Number.isNaN(object.getTime()) ? "<invalid Date>" : `'${object.toISOString()}'`,
    );
  }
  if (object instanceof Uint8Array) return out.add(reprBytes(object, limits.maxString));
  if (object instanceof Error) {
    return out.add(`${object.name}(${reprString(object.message, limits.maxString)})`);
  }
  let open: string, close: string;
  let items: Iterable<unknown>;
  let pairs = false;
  if (Array.isArray(object)) {
    [open, close] = tuple ? ["(", ")"] : ["[", "]"];
    items = object;
  } else if (object instanceof Map) {
    [open, close, pairs] = ["{", "}", true];
    items = object.entries();
  } else if (object instanceof Set) {
    if (object.size === 0) return out.add("set()");
    [open, close] = ["{", "}"];
    items = object.values();
  } else {
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      const name = (proto?.constructor as { name?: unknown } | undefined)?.name;
      return out.add(`<${typeof name === "string" && name ? name : "object"} object>`);
    }
    [open, close, pairs] = ["{", "}", true];
    items = Object.entries(object);
  }
  if (seen.includes(object)) return out.add("...");
  if (level > limits.maxDepth) return out.add(`${open}...${close}`);
  seen.push(object);
  out.add(open);
  let count = 0;
  for (const item of items) {
    if (out.full) break;
    if (count > 0) out.add(", ");
    if (count === limits.maxItems) {
      out.add("...");
      count++;
      break;
    }
    if (pairs) {
      const [k, v] = item as [unknown, unknown];
      walk(k, level + 1, false, limits, out, seen);
      out.add(": ");
      walk(v, level + 1, false, limits, out, seen);
    } else {
      walk(item, level + 1, false, limits, out, seen);
    }
    count++;
  }
  seen.pop();
  if (tuple && count === 1) out.add(",");
  out.add(close);
}

/**
 * A bounded, Python-style `repr` of any value: never throws, never recurses past `maxDepth`,
 * never returns more than `maxLength` characters, and escapes control characters.
 *
 * @param value The value (untrusted message data is fine).
 * @param options The limits.
 * @returns The repr text.
 * @example
 * ```ts
 * import { boundedRepr } from "./repr.ts";
 * console.assert(boundedRepr([1, [2, [3, [4]]]]) === "[1, [2, [3, [...]]]]");
 * const cyclic: unknown[] = [1];
 * cyclic.push(cyclic);
 * console.assert(boundedRepr(cyclic) === "[1, ...]");
 * console.assert(boundedRepr("a\nb") === "'a\\nb'");
 * ```
 */
export function boundedRepr(value: unknown, options?: ReprOptions): string {
  let limit = 1024;
  let limits = DEFAULT_LIMITS;
  let tuple = false;
  if (options) {
    const { maxDepth = 3, maxItems = 100, maxString = 1024, maxLength = 1024 } = options;
    tuple = options.tuple ?? false;
    limit = Math.max(4, Math.floor(maxLength));
    limits = {
      // Clamped so that the recursion stays far from the stack limit.
      maxDepth: Math.min(Math.max(1, Math.floor(maxDepth)), 256),
      maxItems: Math.max(0, Math.floor(maxItems)),
      maxString: Math.max(0, Math.floor(maxString)),
    };
  }
  const out = new Budget(limit);
  try {
    walk(value, 1, tuple, limits, out, []);
  } catch {
    // A getter or proxy that throws: show what was written so far.
    out.add("...");
  }
  return out.text.length > limit ? out.text.slice(0, limit - 3) + "..." : out.text;
}
