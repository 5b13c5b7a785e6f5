-- COUNT: the number of live sessions: those indexed past now, and those whose index lags
-- (restarted since it last moved) and are live, which it brings up to date.
-- KEYS: the deadline index.
-- ARGV[4...]: (none).
-- Returns the count.
local n = redis.call('ZCOUNT', D, '(' .. fmt(now), '+inf')
for _, h in ipairs(redis.call('ZRANGEBYSCORE', D, '-inf', fmt(now))) do
  local d = redis.call('HGET', skey(h), 'd')
  if d and tonumber(d) > now then
    redis.call('ZADD', D, d, h)
    redis.call('HSET', skey(h), 'k', d)
    n = n + 1
  end
end
return n
