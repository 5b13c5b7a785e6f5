-- SET_DATA: replace a live session's data; an ended session stays ended.
-- KEYS: the session's hash.
-- ARGV[4...]: h, has data ('1'/'0'), data.
-- Returns 1 if the session was live and now holds the data, else 0.
local h, f = load_via(ARGV[4])
local S, has_data, data = skey(h), ARGV[5], ARGV[6]
if not live(f) then return 0 end
if has_data == '1' then
  redis.call('HSET', S, 'x', data)
else
  redis.call('HDEL', S, 'x')
end
return 1
