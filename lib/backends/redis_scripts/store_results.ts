/**
 * {@linkcode STORE_RESULT} for several tasks in one call: each meta is stored and published
 * (Celery's `SETEX` + `PUBLISH`) unless a SUCCESS is already stored under its key, exactly as
 * the single-task script does, one key after the other.
 *
 * KEYS[i]    celery-task-meta-<task id>
 * ARGV[1]    expiry in seconds; 0 keeps them forever
 * ARGV[1+i]  the meta JSON of KEYS[i]
 *
 * Returns how many were stored.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The batched store script. */
export const STORE_RESULTS: RedisScript = new RedisScript(
  "store_results",
  `
local ttl = tonumber(ARGV[1])
local stored = 0
for i = 1, #KEYS do
  local key = KEYS[i]
  local keep = false
  local current = redis.call('GET', key)
  if current then
    local ok, meta = pcall(cjson.decode, current)
    keep = ok and type(meta) == 'table' and meta['status'] == 'SUCCESS'
  end
  if not keep then
    if ttl > 0 then
      redis.call('SETEX', key, ttl, ARGV[i + 1])
    else
      redis.call('SET', key, ARGV[i + 1])
    end
    redis.call('PUBLISH', key, ARGV[i + 1])
    stored = stored + 1
  end
end
return stored
`,
);
