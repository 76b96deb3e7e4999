/**
 * Log-line hygiene. Task names, ids, arguments and error messages come from messages anyone
 * can send; written raw, a `\n` forges a log line and an `\x1b[` sequence rewrites the
 * terminal. Everything a logger writes goes through {@linkcode escapeControl}.
 *
 * @module
 */

// C0 controls, DEL, C1 controls, the Unicode line/paragraph separators, and the bidirectional
// overrides and isolates that reorder what a reader sees.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

// V8's JSON.rawJSON (TC39 "JSON.parse source text access"); TypeScript's lib lacks it.
const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function escapeOne(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Escapes control characters as visible text, for a log line: `\n`, `\r`, `\t`, `\xNN` for
 * the other C0 and C1 controls and DEL, `\uNNNN` for U+2028/U+2029 and the bidi controls.
 * Other text, backslashes included, is unchanged. Linear time.
 *
 * @param text Any text.
 * @returns The text, on one line and free of terminal escapes.
 * @example
 * ```ts
 * import { escapeControl } from "./_log.ts";
 * console.assert(escapeControl("evil\n\x1b[31mtask") === "evil\\n\\x1b[31mtask");
 * ```
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, escapeOne);
}

/**
 * JSON for a log record: big ints as JSON integers, errors as their message, a cycle as
 * `"[Circular]"`. It may still throw (a getter that throws, a `toJSON` that does).
 *
 * @param value The record or fields.
 * @returns The JSON text.
 * @example
 * ```ts
 * import { logJson } from "./_log.ts";
 * console.assert(logJson({ n: 2n ** 64n }) === '{"n":18446744073709551616}');
 * ```
 */
export function logJson(value: unknown): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return rawJson(v.toString());
    if (v instanceof Error) return v.message;
    if (v !== null && typeof v === "object") {
      if (seen.has(v)) return "[Circular]";
      seen.add(v);
    }
    return v;
  });
}

/**
 * Formats a log line's structured fields as JSON, safe for any value: a `bigint` is written
 * as its digits, an `Error` as its message, a repeated object as `"[Circular]"`; the result
 * is then passed through {@linkcode escapeControl}. It never throws.
 *
 * @param fields The fields.
 * @returns JSON text on one line, or `""` for no fields.
 * @example
 * ```ts
 * import { formatFields } from "./_log.ts";
 * console.assert(formatFields({ id: 10n ** 20n, name: "a\u009bb" }) ===
 *   '{"id":100000000000000000000,"name":"a\\x9bb"}');
 * ```
 */
export function formatFields(fields: Record<string, unknown> | undefined): string {
  if (!fields || Object.keys(fields).length === 0) return "";
  let text: string;
  try {
    text = logJson(fields);
  } catch (e) {
    text = JSON.stringify({ unformattable: String((e as Error)?.message ?? e) });
  }
  return escapeControl(text);
}

/**
 * One log line as the CLI writes it: `[time] LEVEL message {fields}`, with the message and
 * fields escaped ({@linkcode escapeControl}, {@linkcode formatFields}), so that whatever a
 * message carries, the line stays one line.
 *
 * @param level The level's name, `INFO`.
 * @param message The message (converted with `String`).
 * @param fields Structured fields.
 * @param now The time stamp.
 * @returns The line, without a trailing newline.
 * @example
 * ```ts
 * import { formatLogLine } from "./_log.ts";
 * const line = formatLogLine("INFO", "Task a\nb received", { id: "1" }, new Date(0));
 * console.assert(line === '[1970-01-01T00:00:00.000Z] INFO Task a\\nb received {"id":"1"}');
 * ```
 */
export function formatLogLine(
  level: string,
  message: unknown,
  fields?: Record<string, unknown>,
  now: Date = new Date(),
): string {
  const extra = formatFields(fields);
  return `[${now.toISOString()}] ${level} ${escapeControl(String(message))}${
    extra ? " " + extra : ""
  }`;
}
