/**
 * The Deno KV rate limiter: a GCRA slot reservation done with an atomic check-and-set on one
 * key per task name, so every process using the same KV store shares the rate.
 *
 * Times come from each process's wall clock (`Date.now()`); processes on one machine share it,
 * and for a remote KV (KV Connect) clock skew between hosts shifts the rate by the skew at most.
 *
 * @module
 */

import { kvTarget } from "../_kv.ts";
import { BaseRateLimiter, type Reservation } from "./_rate_limiter.ts";

/** Options of {@linkcode KvRateLimiter}. */
export interface KvRateLimiterOptions {
  /**
   * Key prefix: the key of task `name` is `[...prefix, name]`.
   * @default {["celeriac", "ratelimit"]}
   */
  prefix?: Deno.KvKeyPart[];
}

/**
 * A rate limiter shared by every process using the same Deno KV store.
 *
 * @example
 * ```ts ignore
 * import { KvRateLimiter } from "./rate_limit_kv.ts";
 * await using limiter = new KvRateLimiter("kv://:memory:");
 * await limiter.acquire("tasks.send_mail", "10/s");
 * ```
 */
export class KvRateLimiter extends BaseRateLimiter {
  readonly #path: string;
  readonly #prefix: Deno.KvKeyPart[];
  #kv: Promise<Deno.Kv> | undefined;
  #closing: Promise<void> | undefined;

  /**
   * Creates the limiter; it opens the store on first use.
   *
   * @param url A `kv://` URL (or a KV Connect URL).
   * @param options Key prefix.
   */
  constructor(url: string, options: KvRateLimiterOptions = {}) {
    super();
    this.#path = kvTarget(url).target;
    this.#prefix = options.prefix ?? ["celeriac", "ratelimit"];
  }

  #open(): Promise<Deno.Kv> {
    if (this.#closing) return Promise.reject(new Error("The rate limiter is closed"));
    return this.#kv ??= Deno.openKv(this.#path);
  }

  async reserve(name: string, perSecond: number, maxWaitMs: number): Promise<Reservation> {
    const kv = await this.#open();
    const key = [...this.#prefix, name];
    const interval = 1000 / perSecond;
    for (let attempt = 0;; attempt++) {
      try {
        const entry = await kv.get<number>(key);
        const now = Date.now();
        const tat = Math.max(entry.value ?? now, now);
        const waitMs = tat - now;
        if (waitMs > maxWaitMs) return { reserved: false, waitMs };
        const result = await kv.atomic().check(entry)
          .set(key, tat + interval, { expireIn: Math.ceil(waitMs + interval) + 1000 })
          .commit();
        if (result.ok) return { reserved: true, waitMs };
      } catch (error) {
        // SQLite contention between processes is retried, never surfaced.
        if (!/database is locked|busy/i.test(String(error)) || attempt > 200) throw error;
      }
      // Another process took the slot first: read again, with a little backoff under load.
      if (attempt > 2) {
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, attempt * 2)));
      }
    }
  }

  close(): Promise<void> {
    return this.#closing ??= (async () => {
      const kv = await this.#kv?.catch(() => undefined);
      kv?.close();
    })();
  }
}
