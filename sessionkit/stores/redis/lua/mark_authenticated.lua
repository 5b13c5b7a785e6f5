-- MARK_AUTHENTICATED: the user of a live session has just entered a credential again.
-- KEYS: the session's hash.
-- ARGV[4...]: h.
-- Returns 1 if the session was live (its 'r' is now), else 0.
local S = skey(ARGV[4])
local d = redis.call('HGET', S, 'd')
if not d or tonumber(d) <= now then return 0 end
redis.call('HSET', S, 'r', fmt(now))
return 1
