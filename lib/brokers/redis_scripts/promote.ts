/**
 * Moves scheduled (ETA) messages that are due onto their lists, atomically, so each one is
 * promoted exactly once however many consumers run the promoter.
 *
 * KEYS[1]  the ETA zset (member = json([list key, envelope]), score = ETA in ms)
 * ARGV[1]  now, in ms
 * ARGV[2]  most messages to move
 *
 * Returns {moved, next}: how many moved, and the score of the next member ("" when none).
 * The list keys live inside members, so this script is not Redis Cluster safe.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The promote script. */
export const PROMOTE: RedisScript = new RedisScript(
  "promote",
  `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local ok, entry = pcall(cjson.decode, member)
  if ok and type(entry) == 'table' and type(entry[1]) == 'string' and type(entry[2]) == 'string' then
    redis.call('LPUSH', entry[1], entry[2])
  end
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or ''}
`,
);
