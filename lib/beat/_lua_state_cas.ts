/**
 * Compare-and-set of a beat entry's state (canonical JSON text).
 *
 * KEYS[1] the entry key. ARGV[1] the expected text, or "" for "absent". ARGV[2] the new text.
 * Returns 1 when written, 0 when the stored text differs from the expected one.
 *
 * @module
 */
export const STATE_CAS_LUA = `
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;
