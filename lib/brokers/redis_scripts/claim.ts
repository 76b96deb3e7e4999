/**
 * Claims up to `ARGV[3]` messages atomically: each one is popped from its list and recorded in
 * kombu's `unacked` hash and `unacked_index` zset in the same step, so there is no moment when
 * a popped message is in neither place (kombu's BRPOP-then-MULTI gap).
 *
 * KEYS[1]  unacked hash (tag → json([envelope, exchange, routing_key]), kombu's layout)
 * KEYS[2]  unacked_index zset (tag → delivery time in seconds, kombu's layout)
 * KEYS[3]  celeriac.deliveries hash (tag → number of deliveries)
 * KEYS[4+2i], KEYS[5+2i]  a list to pop from (right end, as BRPOP), and its dead-letter list
 * ARGV[1]  now, in seconds (float, as kombu scores)
 * ARGV[2]  max deliveries: a message claimed more often goes to the dead-letter list
 * ARGV[3]  most messages to claim
 * ARGV[4+i]  the queue name (routing key) of list i
 *
 * Returns a flat array: queue, envelope, delivery count, delivery tag, ... Envelopes that are not JSON or
 * have no delivery tag go to the dead-letter list instead.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The claim script. */
export const CLAIM: RedisScript = new RedisScript(
  "claim",
  `
local now = ARGV[1]
local max_deliveries = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local out = {}
local got = 0
local lists = (#KEYS - 3) / 2
for i = 0, lists - 1 do
  local list = KEYS[4 + 2 * i]
  local dlq = KEYS[5 + 2 * i]
  local queue = ARGV[4 + i]
  while got < want do
    local raw = redis.call('RPOP', list)
    if not raw then break end
    local ok, env = pcall(cjson.decode, raw)
    local tag = nil
    if ok and type(env) == 'table' and type(env['properties']) == 'table' then
      tag = env['properties']['delivery_tag']
    end
    if type(tag) ~= 'string' then
      redis.call('LPUSH', dlq, raw)
    else
      local count = redis.call('HINCRBY', KEYS[3], tag, 1)
      if count > max_deliveries then
        redis.call('HDEL', KEYS[3], tag)
        redis.call('LPUSH', dlq, raw)
      else
        redis.call('ZADD', KEYS[2], now, tag)
        redis.call('HSET', KEYS[1], tag, '[' .. raw .. ',"",' .. cjson.encode(queue) .. ']')
        out[#out + 1] = queue
        out[#out + 1] = raw
        out[#out + 1] = count
        out[#out + 1] = tag
        got = got + 1
      end
    end
  end
  if got >= want then break end
end
return out
`,
);
