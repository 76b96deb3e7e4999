/**
 * Retry backoff: Celery's `get_exponential_backoff_interval` (`celery/utils/time.py`).
 *
 * @module
 */

/** Options of {@linkcode backoffCountdown}. */
export interface BackoffOptions {
  /**
   * Seconds of the first retry; retry `n` waits `factor * 2 ** n`. Celery rounds the factor to
   * an integer of at least 1; celeriac accepts fractions (useful in tests).
   * @default {1}
   */
  factor?: number;
  /**
   * Cap in seconds.
   * @default {600}
   */
  max?: number;
  /**
   * "Full jitter": a uniform random countdown between 0 and the computed one, so that many
   * tasks failing together do not retry together.
   * @default {true}
   */
  jitter?: boolean;
  /** Random source in [0, 1). @default {Math.random} */
  random?: () => number;
}

/**
 * The countdown before retry number `retries + 1`: `min(max, factor * 2 ** retries)`, then full
 * jitter when enabled.
 *
 * @param retries Retries made so far (the task's `this.retries`).
 * @param options Factor, cap, jitter.
 * @returns Seconds to wait.
 * @throws {RangeError} When a number is negative or not finite.
 * @example
 * ```ts
 * import { backoffCountdown } from "./backoff.ts";
 * console.assert(backoffCountdown(3, { jitter: false }) === 8);
 * console.assert(backoffCountdown(20, { jitter: false }) === 600);
 * const j = backoffCountdown(3);
 * console.assert(j >= 0 && j <= 8);
 * ```
 */
export function backoffCountdown(retries: number, options: BackoffOptions = {}): number {
  const { factor = 1, max = 600, jitter = true, random = Math.random } = options;
  for (const [name, n] of [["retries", retries], ["factor", factor], ["max", max]] as const) {
    if (!Number.isFinite(n) || n < 0) {
      throw new RangeError(`Cannot compute a backoff: ${name} must be >= 0, got ${n}`);
    }
  }
  const countdown = Math.min(max, factor * 2 ** retries);
  return jitter ? random() * countdown : countdown;
}
