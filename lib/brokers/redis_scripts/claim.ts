/**
 * Claims up to `ARGV[3]` messages atomically: each one is popped from its list and recorded in
 * kombu's `unacked` hash and `unacked_index` zset in the same script, so there is no moment when
 * a popped message is in neither place (kombu's BRPOP-then-MULTI gap). Messages are popped with
 * `RPOP list count` (Redis 6.2, as BLMOVE) and recorded with one ZADD and one HSET: each
 * `redis.call` costs about 2 µs, more than the work it does for one message.
 *
 * KEYS[1]  unacked hash (tag → json([envelope, exchange, routing_key]), kombu's layout)
 * KEYS[2]  unacked_index zset (tag → delivery time in seconds, kombu's layout)
 * KEYS[3]  celeriac.deliveries hash (tag → number of deliveries), plus one field that is not a
 *          tag, {@linkcode DELIVERIES_PIN}, whose long value keeps the hash in Redis's
 *          `hashtable` encoding: as a `listpack` (up to 512 short fields by default), every
 *          HINCRBY and HDEL scans the whole hash (5 µs a claim with 100+ tasks in flight,
 *          against 0.2 µs)
 * KEYS[4+2i], KEYS[5+2i]  a list to pop from (right end, as BRPOP), and its dead-letter list
 * ARGV[1]  now, in seconds (float, as kombu scores)
 * ARGV[2]  max deliveries: a message claimed more often goes to the dead-letter list
 * ARGV[3]  most messages to claim
 * ARGV[4+i]  the queue name (routing key) of list i
 *
 * Returns two flat arrays:
 * 1. the claimed messages: queue, envelope, delivery count, delivery tag, ...;
 * 2. what it dead-lettered instead, so the consumer can log each and send `task-rejected`
 *    (nothing is dropped silently): queue, reason, envelope, ... An envelope that is not
 *    JSON or has no string `properties.delivery_tag` comes back cut to its first 4096 bytes;
 *    one delivered more than `ARGV[2]` times comes back whole. Dead-lettered envelopes are
 *    pushed unchanged (re-encoding in Lua would round big integers).
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/**
 * The field of `celeriac.deliveries` that is not a delivery tag: its value is longer than
 * Redis's `hash-max-listpack-value` (64 bytes by default), so the hash stays a `hashtable`.
 */
export const DELIVERIES_PIN = "celeriac.pin";

const PIN_VALUE = "keeps this hash in the hashtable encoding (constant-time lookups); not a tag";

/** The claim script. */
export const CLAIM: RedisScript = new RedisScript(
  "claim",
  `
redis.call('HSETNX', KEYS[3], '${DELIVERIES_PIN}', '${PIN_VALUE}')
local now = ARGV[1]
local max_deliveries = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local out = {}
local dead = {}
local index = {}
local unacked = {}
local got = 0
local lists = (#KEYS - 3) / 2
for i = 0, lists - 1 do
  local list = KEYS[4 + 2 * i]
  local dlq = KEYS[5 + 2 * i]
  local queue = ARGV[4 + i]
  local suffix = ',"",' .. cjson.encode(queue) .. ']'
  while got < want do
    local raws = redis.call('RPOP', list, want - got)
    if not raws then break end
    for _, raw in ipairs(raws) do
      local ok, env = pcall(cjson.decode, raw)
      local tag = nil
      local reason = nil
      if not ok then
        reason = 'envelope is not JSON: ' .. tostring(env)
      elseif type(env) ~= 'table' or type(env['properties']) ~= 'table' then
        reason = 'envelope has no properties mapping'
      else
        tag = env['properties']['delivery_tag']
        if type(tag) ~= 'string' then reason = 'envelope has no string delivery_tag' end
      end
      if reason then
        redis.call('LPUSH', dlq, raw)
        dead[#dead + 1] = queue
        dead[#dead + 1] = reason
        dead[#dead + 1] = string.sub(raw, 1, 4096)
      else
        local count = redis.call('HINCRBY', KEYS[3], tag, 1)
        if count > max_deliveries then
          redis.call('HDEL', KEYS[3], tag)
          redis.call('LPUSH', dlq, raw)
          dead[#dead + 1] = queue
          dead[#dead + 1] = 'delivered ' .. count .. ' times (maxDeliveries ' .. max_deliveries .. ')'
          dead[#dead + 1] = raw
        else
          index[#index + 1] = now
          index[#index + 1] = tag
          unacked[#unacked + 1] = tag
          unacked[#unacked + 1] = '[' .. raw .. suffix
          out[#out + 1] = queue
          out[#out + 1] = raw
          out[#out + 1] = count
          out[#out + 1] = tag
          got = got + 1
        end
      end
    end
  end
  if got >= want then break end
end
-- One ZADD and one HSET for the whole claim (a call costs more than the work of one field),
-- in pieces small enough for unpack().
for j = 1, #index, 1000 do
  redis.call('ZADD', KEYS[2], unpack(index, j, math.min(j + 999, #index)))
  redis.call('HSET', KEYS[1], unpack(unacked, j, math.min(j + 999, #unacked)))
end
return {out, dead}
`,
);
