/**
 * Releases a lock only when it still holds our token (redis-py's `Lock.release`), e.g.
 * kombu's `unacked_mutex`.
 *
 * KEYS[1]  the lock key
 * ARGV[1]  our token
 *
 * Returns 1 when released, 0 otherwise.
 *
 * @module
 */

import { RedisScript } from "../../_redis.ts";

/** The release-lock script. */
export const RELEASE_LOCK: RedisScript = new RedisScript(
  "release_lock",
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`,
);
