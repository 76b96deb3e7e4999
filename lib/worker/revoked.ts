/**
 * The set of revoked task ids, as Celery's `LimitedSet` (`celery/worker/state.py:revoked`):
 * at most 50,000 ids, each kept for 3 hours after it was revoked. It is shared with other
 * workers at start-up (mingle `hello`) and can be saved to a state file (`--statedb`).
 *
 * @module
 */

/** Stamps below this (seconds) are Python's `time.monotonic()`, not epoch time (2001-09-09). */
const MONOTONIC_BELOW = 1e9;

/**
 * The host's monotonic clock in seconds, as Python's `time.monotonic()` reads it on Linux
 * (seconds since boot), or `null` when the uptime cannot be read (no `--allow-sys`).
 */
function monotonicNow(): number | null {
  try {
    const up = Deno.osUptime();
    return Number.isFinite(up) && up > 0 ? up : null;
  } catch {
    return null;
  }
}

/**
 * Converts a stamp read from a peer to ms since the epoch. Python's workers stamp revoked ids
 * with `time.monotonic()` (seconds since boot on Linux); a stamp below 1e9 is one of those and
 * is turned into epoch time through this host's uptime. A stamp from a peer on another host
 * (ahead of our uptime) or read without `--allow-sys` counts as revoked now, so the id is kept
 * a full expiry rather than lost.
 */
function stampToEpochMs(seconds: number): number {
  if (seconds >= MONOTONIC_BELOW) return seconds * 1000;
  const now = Date.now();
  const mono = monotonicNow();
  if (mono === null || seconds > mono + 5) return now;
  return now - Math.max(0, mono - seconds) * 1000;
}

/** Options of {@linkcode RevokedSet}. */
export interface RevokedSetOptions {
  /**
   * Most ids kept; the oldest go first.
   * @default {50_000}
   */
  maxSize?: number;
  /**
   * Milliseconds an id is kept after it was revoked.
   * @default {10_800_000}
   */
  keepMs?: number;
}

/**
 * Revoked task ids with the time each was revoked.
 *
 * @example
 * ```ts
 * import { RevokedSet } from "./revoked.ts";
 * const revoked = new RevokedSet({ keepMs: 60_000 });
 * revoked.add("a");
 * console.assert(revoked.has("a") && !revoked.has("b"));
 * ```
 */
export class RevokedSet {
  // id -> revoked at (ms since the epoch); Map keeps insertion order, oldest first.
  #items = new Map<string, number>();
  #max: number;
  #keep: number;

  /**
   * Creates an empty set.
   *
   * @param options Size and age limits.
   */
  constructor(options: RevokedSetOptions = {}) {
    this.#max = options.maxSize ?? 50_000;
    this.#keep = options.keepMs ?? 10_800_000;
  }

  /** How many ids are held (expired ones included until the next purge). */
  get size(): number {
    return this.#items.size;
  }

  /**
   * Adds an id.
   *
   * @param id The task id.
   * @param at When it was revoked, ms since the epoch. @default {Date.now()}
   */
  add(id: string, at: number = Date.now()): void {
    if (typeof id !== "string" || id === "") return;
    if (at + this.#keep < Date.now()) return;
    const known = this.#items.get(id);
    if (known !== undefined && known >= at) return;
    this.#items.delete(id);
    this.#items.set(id, at);
    while (this.#items.size > this.#max) this.#items.delete(this.#items.keys().next().value!);
  }

  /**
   * Whether an id is revoked (and not expired).
   *
   * @param id The task id.
   * @returns True when revoked.
   */
  has(id: string): boolean {
    const at = this.#items.get(id);
    if (at === undefined) return false;
    if (at + this.#keep < Date.now()) {
      this.#items.delete(id);
      return false;
    }
    return true;
  }

  /** Drops expired ids. */
  purge(): void {
    const oldest = Date.now() - this.#keep;
    for (const [id, at] of this.#items) if (at < oldest) this.#items.delete(id);
  }

  /**
   * The ids, oldest first.
   *
   * @returns The live ids.
   */
  ids(): string[] {
    this.purge();
    return [...this.#items.keys()];
  }

  /**
   * The ids with the time each was revoked, in seconds as a float: the shape Celery's
   * `hello` reply and `LimitedSet.update(dict)` use.
   *
   * @returns `{id: seconds}`.
   */
  toJSON(): Record<string, number> {
    this.purge();
    const out: Record<string, number> = {};
    for (const [id, at] of this.#items) {
      const s = at / 1000;
      // Python rejects an int here ("Expecting float timestamp"): keep a fraction.
      out[id] = Number.isInteger(s) ? s + 0.0001 : s;
    }
    return out;
  }

  /**
   * The ids in the shape a Celery worker sends in `hello` (mingle): `{id: seconds}` stamped on
   * this host's monotonic clock, as Python's `LimitedSet` stamps them with `time.monotonic()`,
   * so a Python worker expires them on time. Falls back to {@linkcode toJSON}'s epoch seconds
   * when the uptime cannot be read.
   *
   * @returns `{id: monotonic seconds}`.
   */
  toWire(): Record<string, number> {
    const mono = monotonicNow();
    if (mono === null) return this.toJSON();
    this.purge();
    const now = Date.now();
    const out: Record<string, number> = {};
    for (const [id, at] of this.#items) {
      const s = Math.max(0.0001, mono - (now - at) / 1000);
      // Python rejects an int here ("Expecting float timestamp"): keep a fraction.
      out[id] = Number.isInteger(s) ? s + 0.0001 : s;
    }
    return out;
  }

  /**
   * Merges ids from a `hello` reply or a state file: `{id: seconds}`, `{id: [seconds, ...]}`,
   * or a list of ids (revoked now). Stamps are epoch seconds or, from Python workers,
   * `time.monotonic()` seconds (below 1e9), converted through this host's uptime. Malformed
   * entries are skipped.
   *
   * @param data The ids.
   * @returns How many entries were read.
   */
  merge(data: unknown): number {
    let n = 0;
    if (Array.isArray(data)) {
      for (const id of data) if (typeof id === "string") this.add(id), n++;
    } else if (data !== null && typeof data === "object") {
      for (const [id, v] of Object.entries(data)) {
        const s = Array.isArray(v) ? v[0] : v;
        if (typeof s === "number" && Number.isFinite(s)) this.add(id, stampToEpochMs(s)), n++;
      }
    }
    return n;
  }
}
