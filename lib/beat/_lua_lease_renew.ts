/**
 * Extends the beat leader lease only if the caller holds it.
 *
 * KEYS[1] the lease key. ARGV[1] the owner id. ARGV[2] the new lease length in ms.
 * Returns 1 when extended, 0 when the lease is held by someone else or absent.
 *
 * @module
 */
export const LEASE_RENEW_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;
