/**
 * An in-process {@linkcode BeatStore}, for tests and single-process apps.
 *
 * @module
 */

import { type BeatStore, type EntryState, sameState } from "./store.ts";

/** Options of {@linkcode MemoryBeatStore}. */
export interface MemoryBeatStoreOptions {
  /**
   * The clock leases expire by, in ms since the epoch.
   * @default {Date.now}
   */
  now?: () => number;
}

/**
 * A {@linkcode BeatStore} in memory. Schedulers that share one instance behave as replicas.
 *
 * @example
 * ```ts
 * import { MemoryBeatStore } from "./store_memory.ts";
 * await using store = new MemoryBeatStore();
 * console.assert(await store.acquireLease("a", 1000));
 * console.assert(!(await store.acquireLease("b", 1000)));
 * ```
 */
export class MemoryBeatStore implements BeatStore {
  #lease: { owner: string; expiresAt: number } | null = null;
  #states = new Map<string, EntryState>();
  #now: () => number;

  /**
   * Creates the store.
   *
   * @param options Options.
   */
  constructor(options: MemoryBeatStoreOptions = {}) {
    this.#now = options.now ?? Date.now;
  }

  acquireLease(owner: string, ttl: number): Promise<boolean> {
    const now = this.#now();
    if (!this.#lease || this.#lease.expiresAt <= now || this.#lease.owner === owner) {
      this.#lease = { owner, expiresAt: now + ttl };
      return Promise.resolve(true);
    }
    return Promise.resolve(false);
  }

  renewLease(owner: string, ttl: number): Promise<boolean> {
    const now = this.#now();
    if (this.#lease?.owner === owner && this.#lease.expiresAt > now) {
      this.#lease.expiresAt = now + ttl;
      return Promise.resolve(true);
    }
    return Promise.resolve(false);
  }

  releaseLease(owner: string): Promise<void> {
    if (this.#lease?.owner === owner) this.#lease = null;
    return Promise.resolve();
  }

  getState(name: string): Promise<EntryState | null> {
    const s = this.#states.get(name);
    return Promise.resolve(s ? { ...s } : null);
  }

  compareAndSet(name: string, expected: EntryState | null, next: EntryState): Promise<boolean> {
    if (!sameState(this.#states.get(name) ?? null, expected)) return Promise.resolve(false);
    this.#states.set(name, { ...next });
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
