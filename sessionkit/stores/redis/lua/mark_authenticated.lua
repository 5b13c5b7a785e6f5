-- MARK_AUTHENTICATED: the user of a live session has just entered a credential again.
-- KEYS: the session's hash.
-- ARGV[4...]: h.
-- Returns 1 if the session was live (its 'r' is now), else 0.
local h, f = load_via(ARGV[4])
if not live(f) then return 0 end
redis.call('HSET', skey(h), 'r', fmt(now))
return 1
