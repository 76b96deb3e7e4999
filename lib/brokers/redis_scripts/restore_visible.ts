/**
 * Restores one unacked message whose lease ran out (kombu's `restore_visible`, one tag): only
 * if it is still unacked and its `unacked_index` score is still at or below the cutoff, so a
 * lease renewed in the meantime wins. A message delivered `max` times already goes to the
 * dead-letter list instead (a task that keeps killing its worker).
 *
 * KEYS[1]  unacked hash
 * KEYS[2]  unacked_index zset
 * KEYS[3]  celeriac.deliveries hash
 * KEYS[4]  the queue list (kombu restores to the base name)
 * KEYS[5]  the dead-letter list
 * ARGV[1]  delivery tag
 * ARGV[2]  cutoff score (now - visibility timeout, seconds)
 * ARGV[3]  the envelope to push back (redelivered flags set)
 * ARGV[4]  max deliveries
 *
 * Returns "requeued", "dead" or "kept".
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The restore script. */
export const RESTORE_VISIBLE: RedisScript = new RedisScript(
  "restore_visible",
  `
local tag = ARGV[1]
local score = redis.call('ZSCORE', KEYS[2], tag)
if not score or tonumber(score) > tonumber(ARGV[2]) then return 'kept' end
if redis.call('HEXISTS', KEYS[1], tag) == 0 then
  redis.call('ZREM', KEYS[2], tag)
  return 'kept'
end
redis.call('ZREM', KEYS[2], tag)
redis.call('HDEL', KEYS[1], tag)
local count = tonumber(redis.call('HGET', KEYS[3], tag) or '0')
if count >= tonumber(ARGV[4]) then
  redis.call('HDEL', KEYS[3], tag)
  redis.call('LPUSH', KEYS[5], ARGV[3])
  return 'dead'
end
redis.call('RPUSH', KEYS[4], ARGV[3])
return 'requeued'
`,
);
