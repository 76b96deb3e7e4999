/**
 * Stores a task's meta and publishes it on the channel named after the key (Celery's
 * `RedisBackend._set`: `SETEX` + `PUBLISH`), unless a SUCCESS is already stored there: the
 * check and the write are one atomic step, where Celery reads first and writes in a separate
 * round trip.
 *
 * KEYS[1]  celery-task-meta-<task id>
 * ARGV[1]  the meta JSON
 * ARGV[2]  expiry in seconds; 0 keeps it forever
 *
 * Returns 1 when stored, 0 when a SUCCESS was kept.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The store script. */
export const STORE_RESULT: RedisScript = new RedisScript(
  "store_result",
  `
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SETEX', KEYS[1], ttl, ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`,
);
