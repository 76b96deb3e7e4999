/**
 * Settles a rejected delivery: back on its queue (with its redelivered flags set), or on the
 * dead-letter list, or dropped. Does nothing when the tag is no longer unacked (someone
 * restored it already), so a message is never duplicated.
 *
 * KEYS[1]  unacked hash
 * KEYS[2]  unacked_index zset
 * KEYS[3]  celeriac.deliveries hash
 * KEYS[4]  the queue list to push back to
 * KEYS[5]  the dead-letter list
 * ARGV[1]  delivery tag
 * ARGV[2]  the envelope to push back (redelivered flags set); unused in "dead" mode
 * ARGV[3]  mode: "requeue" (dead-letter past max deliveries), "restore" (always requeue, at
 *          shutdown), "release" (claimed but never handed out: back at the consume end, its
 *          delivery not counted) or "dead" (dead-letter list)
 * ARGV[4]  max deliveries
 * ARGV[5]  "left" to LPUSH (back of the line, kombu's reject), "right" to RPUSH (next out,
 *          kombu's restore)
 * ARGV[6]  the envelope to dead-letter (with its `x-celeriac-dead-letter-reason` header);
 *          unused in "restore" mode
 *
 * Returns "requeued", "dead" or "gone".
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The settle script. */
export const SETTLE: RedisScript = new RedisScript(
  "settle",
  `
local tag = ARGV[1]
if redis.call('HEXISTS', KEYS[1], tag) == 0 then return 'gone' end
redis.call('ZREM', KEYS[2], tag)
redis.call('HDEL', KEYS[1], tag)
local count = tonumber(redis.call('HGET', KEYS[3], tag) or '0')
local mode = ARGV[3]
if mode == 'release' then
  if count <= 1 then
    redis.call('HDEL', KEYS[3], tag)
  else
    redis.call('HINCRBY', KEYS[3], tag, -1)
  end
  redis.call('RPUSH', KEYS[4], ARGV[2])
  return 'requeued'
end
if mode == 'restore' or (mode == 'requeue' and count < tonumber(ARGV[4])) then
  if ARGV[5] == 'left' then
    redis.call('LPUSH', KEYS[4], ARGV[2])
  else
    redis.call('RPUSH', KEYS[4], ARGV[2])
  end
  return 'requeued'
end
redis.call('HDEL', KEYS[3], tag)
redis.call('LPUSH', KEYS[5], ARGV[6])
return 'dead'
`,
);
