/**
 * The revoked stamps of Celery 5.3+'s `revoke_by_stamped_headers` (`worker_state.revoked_stamps`
 * in `celery/worker/state.py`): stamp name → the values revoked. A message carrying a stamp
 * with one of those values (any value of a list stamp) is discarded as revoked. As Celery, they
 * live in the worker's memory only: no expiry, not shared by mingle, not saved by `--statedb`.
 *
 * @module
 */

import { readStamps } from "../protocol/stamps.ts";

// Celery's `maybe_list`: a list stays, null is none, anything else is a list of one.
const asList = (value: unknown): unknown[] =>
  value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];

// Stamp values come from JSON: compare them by their JSON text, as Python compares them by ==.
const key = (value: unknown): string => JSON.stringify(value) ?? "null";

/** A stamp that revoked a message: its name and the matching value. */
export interface RevokingStamp {
  /** The stamp name. */
  name: string;
  /** The value the message carries that was revoked. */
  value: unknown;
}

/**
 * Reads the `headers` argument of `revoke_by_stamped_headers`: a mapping of stamp name →
 * value or list of values, or (as Celery's CLI sends it) a list of `"name=value"` strings.
 * Anything else gives no stamps.
 *
 * @param headers The argument.
 * @returns Stamp name → values.
 * @example
 * ```ts
 * import { readRevokeHeaders } from "./revoked_stamps.ts";
 * console.assert(readRevokeHeaders(["mon=x", "tag=a"]).tag![0] === "a");
 * console.assert(readRevokeHeaders({ mon: ["x", "y"] }).mon!.length === 2);
 * ```
 */
export function readRevokeHeaders(headers: unknown): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  if (Array.isArray(headers)) {
    for (const h of headers) {
      if (typeof h !== "string" || !h.includes("=")) continue;
      // As Celery: `{h.split('=')[0]: h.split('=')[1] for h in headers}`, the last one wins.
      const [name, value] = h.split("=");
      out[name!] = [value];
    }
  } else if (typeof headers === "object" && headers !== null) {
    for (const [name, values] of Object.entries(headers)) out[name] = asList(values);
  }
  return out;
}

/**
 * The first stamp of a message's stamps (name → value) whose value, or one of whose list
 * values, is in `revoked` (name → values), or `null`.
 *
 * @param stamps The message's stamps (`readStamps(headers).stamps`).
 * @param revoked Stamp name → revoked values.
 * @returns The revoking stamp, or `null`.
 * @example
 * ```ts
 * import { matchStamps } from "./revoked_stamps.ts";
 * console.assert(matchStamps({ tags: ["a", "b"] }, { tags: ["b"] })?.value === "b");
 * console.assert(matchStamps({ tags: "c" }, { tags: ["b"] }) === null);
 * ```
 */
export function matchStamps(
  stamps: Readonly<Record<string, unknown>>,
  revoked: Readonly<Record<string, readonly unknown[]>>,
): RevokingStamp | null {
  for (const [name, carried] of Object.entries(stamps)) {
    const values = revoked[name];
    if (!values?.length) continue;
    const wanted = new Set(values.map(key));
    for (const value of asList(carried)) if (wanted.has(key(value))) return { name, value };
  }
  return null;
}

/**
 * The revoked stamps of one worker.
 *
 * @example
 * ```ts
 * import { RevokedStamps } from "./revoked_stamps.ts";
 * const revoked = new RevokedStamps();
 * revoked.add({ mon: "x" });
 * const headers = { stamped_headers: ["mon"], stamps: { mon: "x" } };
 * console.assert(revoked.match(headers)?.name === "mon");
 * ```
 */
export class RevokedStamps {
  #values = new Map<string, unknown[]>();

  /** How many stamp names have revoked values. */
  get size(): number {
    return this.#values.size;
  }

  /**
   * Revokes values of stamps, added to those revoked before (Celery's
   * `revoked_stamps[header] = maybe_list(old) + maybe_list(new)`).
   *
   * @param stamps Stamp name → value or list of values.
   */
  add(stamps: Readonly<Record<string, unknown>>): void {
    for (const [name, values] of Object.entries(stamps)) {
      const known = this.#values.get(name) ?? [];
      const keys = new Set(known.map(key));
      for (const value of asList(values)) {
        if (!keys.has(key(value))) known.push(value), keys.add(key(value));
      }
      if (known.length) this.#values.set(name, known);
    }
  }

  /**
   * Whether a message's stamps are revoked: the stamp that matched, or `null`. Free when no
   * stamp was ever revoked (the headers are not read).
   *
   * @param headers The message headers (`stamped_headers`, `stamps`).
   * @returns The revoking stamp, or `null`.
   */
  match(headers: Readonly<Record<string, unknown>>): RevokingStamp | null {
    if (this.#values.size === 0) return null;
    return matchStamps(readStamps(headers).stamps, Object.fromEntries(this.#values));
  }

  /**
   * The revoked stamps.
   *
   * @returns Stamp name → values.
   */
  toJSON(): Record<string, unknown[]> {
    return Object.fromEntries([...this.#values].map(([n, v]) => [n, [...v]]));
  }
}
