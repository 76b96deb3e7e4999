/**
 * A {@linkcode BeatStore} on Deno KV: a local file shared by the processes of one machine, or
 * a remote KV (Deno Deploy, KV Connect).
 *
 * @module
 */

import { type BeatStore, decodeState, encodeState, type EntryState, sameState } from "./store.ts";

/** Options of {@linkcode KvBeatStore}. */
export interface KvBeatStoreOptions {
  /**
   * First parts of every key: `[...prefix, "lease"]` and `[...prefix, "entry", name]`.
   * @default {["celeriac", "beat"]}
   */
  prefix?: Deno.KvKeyPart[];
}

interface Lease {
  owner: string;
  expiresAt: number;
}

/** SQLite reports contention between processes as "database is locked" or "busy". */
function isBusy(error: unknown): boolean {
  return /database is locked|busy/i.test(String((error as Error)?.message ?? error));
}

async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (!isBusy(error) || attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * (attempt + 1)));
    }
  }
}

/**
 * A {@linkcode BeatStore} on Deno KV. The lease is a key holding `{ owner, expiresAt }`,
 * taken and renewed by an atomic check on its versionstamp; entry states are compared and
 * set the same way. Lease expiry reads the local clock, so replicas on different machines
 * need clocks in sync to well under the lease length.
 *
 * @example
 * ```ts
 * import { KvBeatStore } from "./store_kv.ts";
 * await using store = new KvBeatStore(":memory:");
 * console.assert(await store.acquireLease("a", 1000));
 * console.assert(!(await store.acquireLease("b", 1000)));
 * ```
 */
export class KvBeatStore implements BeatStore {
  /** The first parts of every key. */
  readonly prefix: Deno.KvKeyPart[];
  #kv: Promise<Deno.Kv>;
  #owned: boolean;
  #closing: Promise<void> | null = null;

  /**
   * Creates the store.
   *
   * @param path A path for `Deno.openKv` (a file, `":memory:"`, a KV Connect URL, or
   * `undefined` for the default database), or an open `Deno.Kv` that you own.
   * @param options Options.
   */
  constructor(path?: string | Deno.Kv, options: KvBeatStoreOptions = {}) {
    this.prefix = options.prefix ?? ["celeriac", "beat"];
    this.#owned = typeof path !== "object";
    this.#kv = typeof path === "object" ? Promise.resolve(path) : retrying(() => Deno.openKv(path));
  }

  async #leaseOp(owner: string, ttl: number, mayTake: boolean): Promise<boolean> {
    const kv = await this.#kv;
    const key = [...this.prefix, "lease"];
    return await retrying(async () => {
      for (;;) {
        const current = await kv.get<Lease>(key);
        const now = Date.now();
        const lease = current.value;
        const mine = lease?.owner === owner && lease.expiresAt > now;
        const free = !lease || lease.expiresAt <= now;
        if (!mine && !(mayTake && free)) return false;
        const result = await kv.atomic().check(current)
          .set(key, { owner, expiresAt: now + ttl } satisfies Lease).commit();
        if (result.ok) return true;
      }
    });
  }

  acquireLease(owner: string, ttl: number): Promise<boolean> {
    return this.#leaseOp(owner, ttl, true);
  }

  renewLease(owner: string, ttl: number): Promise<boolean> {
    return this.#leaseOp(owner, ttl, false);
  }

  async releaseLease(owner: string): Promise<void> {
    const kv = await this.#kv;
    const key = [...this.prefix, "lease"];
    await retrying(async () => {
      for (;;) {
        const current = await kv.get<Lease>(key);
        if (current.value?.owner !== owner) return;
        if ((await kv.atomic().check(current).delete(key).commit()).ok) return;
      }
    });
  }

  async getState(name: string): Promise<EntryState | null> {
    const kv = await this.#kv;
    const entry = await retrying(() => kv.get<string>([...this.prefix, "entry", name]));
    return entry.value === null ? null : decodeState(entry.value);
  }

  async compareAndSet(
    name: string,
    expected: EntryState | null,
    next: EntryState,
  ): Promise<boolean> {
    const kv = await this.#kv;
    const key = [...this.prefix, "entry", name];
    return await retrying(async () => {
      const current = await kv.get<string>(key);
      const stored = current.value === null ? null : decodeState(current.value);
      if (!sameState(stored, expected)) return false;
      // The versionstamp check makes read-compare-write one atomic step.
      return (await kv.atomic().check(current).set(key, encodeState(next)).commit()).ok;
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (!this.#owned) return;
      const kv = await this.#kv.catch(() => null);
      kv?.close();
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
