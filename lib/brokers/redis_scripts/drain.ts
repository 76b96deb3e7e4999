/**
 * Moves everything from a consumer's processing list back to its queue (consume end), e.g.
 * when the consumer stops, or when the sweep finds a consumer that died.
 *
 * KEYS[1]  the processing list
 * KEYS[2]  the queue list
 *
 * Returns how many moved.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The drain script. */
export const DRAIN: RedisScript = new RedisScript(
  "drain",
  `
local n = 0
while true do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not v then break end
  n = n + 1
end
return n
`,
);
