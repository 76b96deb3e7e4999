/**
 * Drops the beat leader lease only if the caller holds it.
 *
 * KEYS[1] the lease key. ARGV[1] the owner id.
 * Returns 1 when dropped, 0 otherwise.
 *
 * @module
 */
export const LEASE_RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;
