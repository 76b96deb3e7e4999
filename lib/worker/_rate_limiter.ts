/**
 * The rate limiter seam and its in-process implementation, without the URL dispatch (that is
 * in `lib/transport/registry.ts`), so the Redis and KV limiters can extend the base without an
 * import cycle. Rate limits: Celery's `"10/s"`, `"100/m"`, `"1/h"`, per task type. The `RateLimiter` seam
 * hands out run slots; {@linkcode MemoryRateLimiter} serves one process (the per-worker
 * `rateLimit`, and `globalRateLimit` on `memory://`), the Redis and Deno KV limiters share the
 * slots between every worker on the broker (`globalRateLimit`).
 *
 * The algorithm is GCRA with a burst of one, which is Celery's token bucket of capacity 1: at
 * `10/s` tasks start at least 100 ms apart. A slot is *reserved*: the caller learns exactly when
 * its turn comes, so waiters never race each other for the next token.
 *
 * @module
 */

import { delay } from "../_signal.ts";

/** What {@linkcode RateLimiter.reserve} answers. */
export interface Reservation {
  /** Whether a slot was taken; when `false`, nothing was reserved. */
  reserved: boolean;
  /** Milliseconds until the slot (reserved) or until the next free slot (not reserved). */
  waitMs: number;
}

/** Hands out run slots per task name at a given rate. */
export interface RateLimiter extends AsyncDisposable {
  /**
   * Reserves the next slot for `name` when it is at most `maxWaitMs` away.
   *
   * @param name The task name.
   * @param perSecond The rate, tasks per second (> 0).
   * @param maxWaitMs The longest wait the caller accepts.
   * @returns The reservation.
   */
  reserve(name: string, perSecond: number, maxWaitMs: number): Promise<Reservation>;
  /**
   * Waits for a slot for `name`.
   *
   * @param name The task name.
   * @param rate The rate (`"10/s"`, or tasks per second).
   * @param signal Stops waiting (the promise rejects with the signal's reason).
   * @returns When the caller may run.
   */
  acquire(name: string, rate: string | number, signal?: AbortSignal): Promise<void>;
  /** Releases connections; idempotent. */
  close(): Promise<void>;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600 };

/**
 * Parses a Celery rate into tasks per second; `0` means no limit.
 *
 * @param rate `"10/s"`, `"100/m"`, `"1/h"` (the unit's first letter counts, as Celery), a
 * plain number string (per second), or a number.
 * @returns Tasks per second, `0` for no limit.
 * @throws {TypeError} When the rate cannot be read.
 * @example
 * ```ts
 * import { parseRate } from "./_rate_limiter.ts";
 * console.assert(parseRate("10/s") === 10);
 * console.assert(parseRate("120/m") === 2);
 * console.assert(parseRate("") === 0);
 * ```
 */
export function parseRate(rate: string | number | null | undefined): number {
  if (rate === null || rate === undefined || rate === "" || rate === 0) return 0;
  if (typeof rate === "number") {
    if (Number.isFinite(rate) && rate > 0) return rate;
    throw new TypeError(`Cannot read the rate limit ${rate}: it must be a positive number`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([a-z]+))?\s*$/i.exec(String(rate));
  const unit = m ? UNITS[(m[2] ?? "s")[0]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new TypeError(
      `Cannot read the rate limit ${JSON.stringify(rate)}: expected "N/s", "N/m" or "N/h"`,
    );
  }
  return Number(m[1]) / unit;
}

/** Shared by every limiter: `acquire` on top of `reserve`. */
export abstract class BaseRateLimiter implements RateLimiter {
  abstract reserve(name: string, perSecond: number, maxWaitMs: number): Promise<Reservation>;
  abstract close(): Promise<void>;

  /**
   * Waits for a slot for `name`.
   *
   * @param name The task name.
   * @param rate The rate (`"10/s"`, or tasks per second).
   * @param signal Stops waiting (the promise rejects with the signal's reason).
   * @returns When the caller may run.
   * @throws {TypeError} When the rate cannot be read.
   */
  async acquire(name: string, rate: string | number, signal?: AbortSignal): Promise<void> {
    const perSecond = parseRate(rate);
    if (perSecond === 0) return;
    signal?.throwIfAborted();
    const { waitMs } = await this.reserve(name, perSecond, Infinity);
    if (waitMs > 0) await delay(waitMs, signal);
    signal?.throwIfAborted();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A limiter in this process's memory.
 *
 * @example
 * ```ts
 * import { MemoryRateLimiter } from "./_rate_limiter.ts";
 * await using limiter = new MemoryRateLimiter();
 * const first = await limiter.reserve("t", 10, 1000);
 * const second = await limiter.reserve("t", 10, 1000);
 * console.assert(first.waitMs === 0 && second.reserved && second.waitMs > 90);
 * ```
 */
export class MemoryRateLimiter extends BaseRateLimiter {
  // Theoretical arrival time per name: the earliest time the next slot is free.
  #tat = new Map<string, number>();
  #now: () => number;

  /**
   * Creates the limiter.
   *
   * @param now Clock in ms (for tests). @default {performance.now}
   */
  constructor(now: () => number = () => performance.now()) {
    super();
    this.#now = now;
  }

  /**
   * Reserves the next slot for `name` when it is at most `maxWaitMs` away.
   *
   * @param name The task name.
   * @param perSecond The rate, tasks per second.
   * @param maxWaitMs The longest wait the caller accepts.
   * @returns The reservation.
   */
  reserve(name: string, perSecond: number, maxWaitMs: number): Promise<Reservation> {
    const now = this.#now();
    const tat = Math.max(this.#tat.get(name) ?? now, now);
    const waitMs = tat - now;
    if (waitMs > maxWaitMs) return Promise.resolve({ reserved: false, waitMs });
    this.#tat.set(name, tat + 1000 / perSecond);
    return Promise.resolve({ reserved: true, waitMs });
  }

  /**
   * Nothing to release.
   *
   * @returns At once.
   */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
