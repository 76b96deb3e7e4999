/**
 * Celery 5.3+ stamps (`celery/canvas.py:Signature.stamp`, `celery/app/amqp.py:as_task_v2`).
 * A stamp is a named value set on a signature: it lives flat in the signature's options,
 * named by the list option `stamped_headers`, and a message carries it in two headers,
 * `stamped_headers` (the names) and `stamps` (name → value). Because stamps sit in the
 * signatures' options, every message sent from a stamped signature carries them: the next
 * step of a stamped chain, a stamped link or errback, a stamped chord body. A retry keeps
 * the request's stamps (its message keeps all headers).
 *
 * @module
 */

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

// Celery's `maybe_list`: a list stays, null is none, anything else is a list of one.
const names = (value: unknown): string[] =>
  (value === undefined || value === null ? [] : Array.isArray(value) ? value : [value])
    .filter((n): n is string => typeof n === "string");

/**
 * The stamps a message carries, as Celery's worker reads them (`Request.stamps`): one entry
 * per name in `stamped_headers`, its value from the `stamps` header (`null` when missing).
 * Headers that are not a list of names and a mapping give no stamps; they never fail a task.
 *
 * @param headers The message headers.
 * @returns The stamp names and the stamps.
 * @example
 * ```ts
 * import { readStamps } from "./stamps.ts";
 * const s = readStamps({ stamped_headers: ["mon"], stamps: { mon: "x", other: 1 } });
 * console.assert(s.stampedHeaders[0] === "mon" && s.stamps.mon === "x" && !("other" in s.stamps));
 * ```
 */
export function readStamps(
  headers: Readonly<Record<string, unknown>>,
): { stampedHeaders: string[]; stamps: Record<string, unknown> } {
  const stampedHeaders = names(headers.stamped_headers);
  const values = isObject(headers.stamps) ? headers.stamps : {};
  const stamps: Record<string, unknown> = {};
  for (const name of stampedHeaders) stamps[name] = values[name] ?? null;
  return { stampedHeaders, stamps };
}

/**
 * How many times the task was replaced (`Task.replace`) on the way here: the
 * `replaced_task_nesting` header, 0 when absent or not a count.
 *
 * @param headers The message headers.
 * @returns The nesting.
 * @example
 * ```ts
 * import { replacedTaskNesting } from "./stamps.ts";
 * console.assert(replacedTaskNesting({ replaced_task_nesting: 2 }) === 2);
 * console.assert(replacedTaskNesting({}) === 0);
 * ```
 */
export function replacedTaskNesting(headers: Readonly<Record<string, unknown>>): number {
  const n = headers.replaced_task_nesting;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * The stamps in a signature's options (what `as_task_v2` sends as the `stamps` header), or
 * `undefined` when the options name none.
 *
 * @param options Signature options.
 * @returns Name → value, in `stamped_headers` order.
 * @example
 * ```ts
 * import { optionStamps } from "./stamps.ts";
 * console.assert(optionStamps({ stamped_headers: ["mon"], mon: "x" })?.mon === "x");
 * console.assert(optionStamps({ queue: "q" }) === undefined);
 * ```
 */
export function optionStamps(
  options: Readonly<Record<string, unknown>>,
): Record<string, unknown> | undefined {
  if (!Array.isArray(options.stamped_headers)) return undefined;
  const stamps: Record<string, unknown> = {};
  for (const name of names(options.stamped_headers)) stamps[name] = options[name] ?? null;
  return stamps;
}

/**
 * Writes stamps into signature options as Celery's `Signature.stamp(**headers)` does
 * (`_stamp_headers` with `append_stamps=False`): the new value wins, except that a list
 * stamp is extended by the list already there; stamps already set and not given are kept;
 * `stamped_headers` names them all.
 *
 * @param options Signature options, changed in place.
 * @param stamps Name → value.
 * @example
 * ```ts
 * import { writeStamps } from "./stamps.ts";
 * const o: Record<string, unknown> = { stamped_headers: ["tags"], tags: ["p"] };
 * writeStamps(o, { tags: ["q"], mon: 1 });
 * console.assert(JSON.stringify(o.tags) === '["q","p"]' && o.mon === 1);
 * ```
 */
export function writeStamps(
  options: Record<string, unknown>,
  stamps: Readonly<Record<string, unknown>>,
): void {
  const own = names(options.stamped_headers);
  const all = [...new Set([...Object.keys(stamps), ...own])];
  for (const name of Object.keys(stamps)) {
    const value = stamps[name];
    const old = options[name];
    options[name] = own.includes(name) && Array.isArray(value) && Array.isArray(old)
      ? [...value, ...old]
      : value;
  }
  options.stamped_headers = all;
}
