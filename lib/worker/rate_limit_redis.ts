/**
 * The Redis rate limiter: one GCRA slot reservation per call, done atomically by a Lua script
 * on the Redis server's clock, so every worker process on the broker shares the rate.
 *
 * @module
 */

import {
  closeRedisClient,
  connectRedisClient,
  createRedisClient,
  parseRedisUrl,
  type RedisClient,
  RedisScript,
} from "../_redis.ts";
import { BaseRateLimiter, type Reservation } from "./_rate_limiter.ts";

/**
 * Reserves a rate-limit slot (GCRA, burst 1).
 *
 * KEYS[1]  the limit's key; holds the theoretical arrival time (µs, server clock)
 * ARGV[1]  emission interval in µs (1e6 / tasks per second)
 * ARGV[2]  longest acceptable wait in µs; `-1` for no bound
 *
 * Returns `{reserved (1|0), wait in µs}`. Times are written with `%.0f`, since `tostring` of a
 * Lua number above 1e14 would give an exponent and lose precision.
 */
export const RESERVE_SOURCE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if max_wait >= 0 and wait > max_wait then
  return {0, string.format('%.0f', wait)}
end
local ttl = math.ceil((wait + interval) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
return {1, string.format('%.0f', wait)}
`;

const RESERVE = new RedisScript("rate_limit_reserve", RESERVE_SOURCE);

/** Options of {@linkcode RedisRateLimiter}. */
export interface RedisRateLimiterOptions {
  /**
   * Key prefix; the key of task `name` is `${prefix}${name}`.
   * @default {"celeriac:ratelimit:"}
   */
  prefix?: string;
}

/**
 * A rate limiter shared by every process using the same Redis.
 *
 * @example
 * ```ts ignore
 * import { RedisRateLimiter } from "./rate_limit_redis.ts";
 * await using limiter = new RedisRateLimiter("redis://127.0.0.1:6379/0");
 * await limiter.acquire("tasks.send_mail", "10/s");
 * ```
 */
export class RedisRateLimiter extends BaseRateLimiter {
  readonly #url: string;
  readonly #prefix: string;
  #client: Promise<RedisClient> | undefined;
  #closing: Promise<void> | undefined;

  /**
   * Creates the limiter; it connects on first use.
   *
   * @param url A `redis://` or `rediss://` URL.
   * @param options Key prefix.
   */
  constructor(url: string, options: RedisRateLimiterOptions = {}) {
    super();
    this.#url = url;
    this.#prefix = options.prefix ?? "celeriac:ratelimit:";
  }

  #connect(): Promise<RedisClient> {
    if (this.#closing) return Promise.reject(new Error("The rate limiter is closed"));
    return this.#client ??= (async () => {
      const client = createRedisClient(parseRedisUrl(this.#url), undefined, "celeriac-ratelimit");
      await connectRedisClient(client);
      return client;
    })();
  }

  async reserve(name: string, perSecond: number, maxWaitMs: number): Promise<Reservation> {
    const client = await this.#connect();
    const keys = [this.#prefix + name];
    const args = [
      String(Math.max(1, Math.round(1e6 / perSecond))),
      String(Number.isFinite(maxWaitMs) ? Math.round(maxWaitMs * 1000) : -1),
    ];
    const [reserved, wait] = await RESERVE.run(client, keys, args) as [number, string];
    return { reserved: reserved === 1, waitMs: Number(wait) / 1000 };
  }

  close(): Promise<void> {
    return this.#closing ??= (async () => {
      const client = await this.#client?.catch(() => undefined);
      if (client) await closeRedisClient(client);
    })();
  }
}
