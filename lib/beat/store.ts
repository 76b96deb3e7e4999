/**
 * Where beat keeps its leader lease and each entry's run state, so that several replicas and
 * restarts agree on who sends and what was sent.
 *
 * @module
 */

/** The persisted state of one beat entry. */
export interface EntryState {
  /** The scheduled time (ms since the epoch) of the last tick claimed, or `null` if none. */
  lastRunAt: number | null;
  /** How many ticks have been claimed in total. */
  totalRunCount: number;
  /** When beat first saw the entry (ms): ticks before it are not owed. */
  since: number;
}

/**
 * The storage seam of beat. Every method is atomic on its own; the scheduler builds
 * "exactly once per tick" from {@linkcode BeatStore.compareAndSet}.
 */
export interface BeatStore extends AsyncDisposable {
  /**
   * Takes the leader lease for `ttl` ms if nobody holds it (or it expired), or extends it if
   * `owner` already holds it.
   *
   * @param owner A unique id of the caller.
   * @param ttl Lease length in ms.
   * @returns `true` when `owner` holds the lease afterwards.
   */
  acquireLease(owner: string, ttl: number): Promise<boolean>;
  /**
   * Extends the lease only if `owner` holds it.
   *
   * @param owner A unique id of the caller.
   * @param ttl New lease length in ms, from now.
   * @returns `false` when the lease was lost.
   */
  renewLease(owner: string, ttl: number): Promise<boolean>;
  /**
   * Drops the lease if `owner` holds it, so another replica can take over at once.
   *
   * @param owner A unique id of the caller.
   * @returns Nothing.
   */
  releaseLease(owner: string): Promise<void>;
  /**
   * Reads an entry's state.
   *
   * @param name The entry name.
   * @returns The state, or `null` when the entry was never seen.
   */
  getState(name: string): Promise<EntryState | null>;
  /**
   * Writes `next` only if the stored state still equals `expected` (`null`: absent).
   *
   * @param name The entry name.
   * @param expected The state read before.
   * @param next The state to write.
   * @returns `true` when written; `false` when someone else changed it first.
   */
  compareAndSet(name: string, expected: EntryState | null, next: EntryState): Promise<boolean>;
  /** Releases connections the store opened. Idempotent. */
  close(): Promise<void>;
}

/**
 * Whether two states are equal (absent equals absent).
 *
 * @param a A state or `null`.
 * @param b A state or `null`.
 * @returns `true` when equal.
 * @example
 * ```ts
 * import { sameState } from "./store.ts";
 * console.assert(sameState(null, null));
 * console.assert(!sameState(null, { lastRunAt: null, totalRunCount: 0, since: 0 }));
 * ```
 */
export function sameState(a: EntryState | null, b: EntryState | null): boolean {
  if (a === null || b === null) return a === b;
  return a.lastRunAt === b.lastRunAt && a.totalRunCount === b.totalRunCount &&
    a.since === b.since;
}

/**
 * The canonical JSON of a state (fixed key order), so stores can compare serialised states.
 *
 * @param state A state.
 * @returns JSON text.
 * @example
 * ```ts
 * import { encodeState } from "./store.ts";
 * console.assert(encodeState({ totalRunCount: 1, since: 0, lastRunAt: 5 }) === '{"lastRunAt":5,"totalRunCount":1,"since":0}');
 * ```
 */
export function encodeState(state: EntryState): string {
  return JSON.stringify({
    lastRunAt: state.lastRunAt,
    totalRunCount: state.totalRunCount,
    since: state.since,
  });
}

/**
 * Parses what {@linkcode encodeState} wrote.
 *
 * @param text JSON text.
 * @returns The state.
 * @throws {TypeError} When the text is not a state.
 * @example
 * ```ts
 * import { decodeState, encodeState } from "./store.ts";
 * const s = { lastRunAt: 5, totalRunCount: 1, since: 0 };
 * console.assert(decodeState(encodeState(s)).lastRunAt === 5);
 * ```
 */
export function decodeState(text: string): EntryState {
  const v = JSON.parse(text);
  if (
    typeof v !== "object" || v === null || typeof v.totalRunCount !== "number" ||
    typeof v.since !== "number" || !(v.lastRunAt === null || typeof v.lastRunAt === "number")
  ) {
    throw new TypeError(`Cannot read beat entry state: ${text.slice(0, 100)}`);
  }
  return { lastRunAt: v.lastRunAt, totalRunCount: v.totalRunCount, since: v.since };
}
