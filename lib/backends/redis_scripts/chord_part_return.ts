/**
 * Records one finished chord header member, as Celery's Redis backend does
 * (`on_chord_part_return`: `ZADD .j`, `ZCOUNT`, `GET .t`, `GET .s`, `EXPIRE`), and completes
 * the chord in the same atomic step: the one caller whose part makes the count reach the size
 * gets every part and the keys are deleted, so the body is sent exactly once.
 *
 * KEYS[1]  celery-taskset-meta-<group id>.j (zset: json([1, task id, state, result]) → index)
 * KEYS[2]  celery-taskset-meta-<group id>.t (extra members added by dynamic chords)
 * KEYS[3]  celery-taskset-meta-<group id>.s (the header size, from setChordSize)
 * ARGV[1]  the member JSON
 * ARGV[2]  the member's group_index (its score)
 * ARGV[3]  expiry in seconds; 0 keeps the keys forever
 *
 * Returns the members ordered by group_index when the chord completes, else false.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The chord-part script. */
export const CHORD_PART_RETURN: RedisScript = new RedisScript(
  "chord_part_return",
  `
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
local size = redis.call('GET', KEYS[3])
local extra = tonumber(redis.call('GET', KEYS[2]) or '0')
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if not size or ready < tonumber(size) + extra then return false end
local parts = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return parts
`,
);
