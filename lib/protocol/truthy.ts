/**
 * Celery's truthy values: what Python's `if value:` and kombu's `strtobool` accept, so a flag
 * sent by Flower (`terminate=1`), a Python client (`True`) or a command line (`"yes"`) means the
 * same thing here.
 *
 * @module
 */

const TRUE_WORDS = new Set(["1", "true", "yes", "y", "on"]);

/**
 * Whether `value` is true as Celery reads it: `true`, a non-zero number, or one of the words
 * `"1"`, `"true"`, `"yes"`, `"y"`, `"on"` (any case, trimmed). Other strings (`"0"`, `"false"`,
 * `"no"`, `"off"`, `""`), `null`, `undefined`, `0` and empty arrays/objects are false.
 *
 * ```ts
 * import { truthy } from "./truthy.ts";
 * console.assert(truthy(1) && truthy("yes") && truthy(true) && !truthy("0") && !truthy(null));
 * ```
 */
export function truthy(value: unknown): boolean {
  if (typeof value === "boolean") return value;
  if (typeof value === "number") return value !== 0 && !Number.isNaN(value);
  if (typeof value === "bigint") return value !== 0n;
  if (typeof value === "string") return TRUE_WORDS.has(value.trim().toLowerCase());
  if (Array.isArray(value)) return value.length > 0;
  if (value !== null && typeof value === "object") return Object.keys(value).length > 0;
  return false;
}
