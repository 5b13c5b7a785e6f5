-- CHECK: is a session live? (The hot path: after core.lua only.)
-- KEYS: the session's hash.
-- ARGV[4...]: (none).
-- Returns the microseconds left until its deadline, or nil.
local d = redis.call('HGET', KEYS[1], 'd')
if not d or tonumber(d) <= now then return false end
return fmt(tonumber(d) - now)
