-- USER_SESSIONS: a user's live sessions.
-- KEYS: the user's index, the deadline index.
-- ARGV[4...]: username.
-- Returns their records, oldest first.
local out = {}
for _, h in ipairs(redis.call('ZRANGE', ukey(ARGV[4]), 0, -1)) do
  local f = load(h)
  if live(f) then out[#out + 1] = record(h, f) end
end
return out
