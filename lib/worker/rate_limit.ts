/**
 * Rate limits: Celery's `"10/s"`, `"100/m"`, `"1/h"`, per task type. The seam, its in-process
 * limiter and the rate parser live in `_rate_limiter.ts`; which shared limiter a broker URL
 * gets (Redis, Deno KV, memory) is decided by the one scheme registry,
 * `lib/transport/registry.ts`.
 *
 * @module
 */

import { createRateLimiter as fromRegistry } from "../transport/registry.ts";
import type { RateLimiter } from "./_rate_limiter.ts";

export {
  BaseRateLimiter,
  MemoryRateLimiter,
  parseRate,
  type RateLimiter,
  type Reservation,
} from "./_rate_limiter.ts";

/**
 * The limiter for `globalRateLimit` on a broker URL: Redis (a Lua GCRA script), Deno KV (an
 * atomic check-and-set), or one limiter per `memory://` URL shared in the process.
 *
 * @param brokerUrl The broker URL.
 * @param options `prefix`: the broker's key prefix (kombu `global_keyprefix`), put before
 * the limiter's keys.
 * @returns The limiter; close it when done.
 * @throws {TypeError} For a broker whose store cannot share a limit (e.g. AMQP), or an
 * unknown scheme.
 * @example
 * ```ts
 * import { createRateLimiter } from "./rate_limit.ts";
 * await using limiter = await createRateLimiter("memory://doc");
 * await limiter.acquire("tasks.x", "10/s");
 * ```
 */
export function createRateLimiter(
  brokerUrl: string,
  options: { prefix?: string } = {},
): Promise<RateLimiter> {
  return fromRegistry(brokerUrl, options);
}
