-- CHECK: is a session live? (The hot path: after core.lua only.)
-- KEYS: the session's hash.
-- ARGV[4...]: h.
-- Returns the microseconds left until its deadline, or nil. During a renewal's grace, the old
-- key's answer is the session's under its new key.
local d = redis.call('HGET', KEYS[1], 'd')
if not d then
  local nh = redis.call('GET', akey(ARGV[4]))
  if nh then d = redis.call('HGET', skey(nh), 'd') end
end
if not d or tonumber(d) <= now then return false end
return fmt(tonumber(d) - now)
