-- TOUCH: check a session and restart its idle deadline. (The hot path: after core.lua only;
-- one read, one write. The index and the TTLs move only when the indexed deadline 'k' is less
-- than half a timeout away, or later than the new deadline: a worker with a shorter timeout,
-- in a rolling deploy, must not leave the index promising the old one.)
-- KEYS: the session's hash, the deadline index.
-- ARGV[4...]: h, the timeout (us) unless the session has its own, and '1' to read it back.
-- Returns the microseconds left until the new deadline (or, when asked, the session's record as
-- one string, in schema.TOUCHED's layout), or nil if the session is not live. During a
-- renewal's grace, the old key touches the session under its new key.
local S, h, timeout_arg, read_back = KEYS[1], ARGV[4], ARGV[5], ARGV[6] == '1'
local function read()
  if read_back then
    return redis.call('HMGET', S, 'd', 'a', 't', 'k', 'u', 'c', 'x', 'i', 'r', 'g', 'i2', 'i3', 'i4')
  end
  return redis.call('HMGET', S, 'd', 'a', 't', 'k')
end
local v = read()
if not v[1] then
  local nh = redis.call('GET', akey(h))
  if nh then
    S, h = skey(nh), nh
    v = read()
  end
end
if not v[1] or tonumber(v[1]) <= now then return false end
local timeout = tonumber(v[3] or timeout_arg)
local deadline = now + timeout
if v[2] and tonumber(v[2]) < deadline then deadline = tonumber(v[2]) end
local d, l = fmt(deadline), fmt(now)
local k = tonumber(v[4] or v[1])  -- absent: the index holds 'd'
if k - now < timeout / 2 or k > deadline then
  redis.call('HSET', S, 'l', l, 'd', d, 'k', d)
  redis.call('ZADD', KEYS[2], d, h)
  local ttl = math.ceil(timeout * 2 / 1000) + RETAIN  -- (deadline + timeout - now) / 1000
  redis.call('PEXPIRE', S, ttl)
  local u = v[5] or redis.call('HGET', S, 'u')
  for _, key in ipairs({KEYS[2], ukey(u), fkey(u)}) do  -- the user's index is one of the two
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  end
elseif v[4] then
  redis.call('HSET', S, 'l', l, 'd', d)
else  -- the index keeps the deadline 'd' held until now
  redis.call('HSET', S, 'l', l, 'd', d, 'k', v[1])
end
if read_back then
  -- schema.TOUCHED: one string, not a table, whose reply costs the server a microsecond or
  -- two more, a tenth of the script (benchmarks/README.md: the Redis store's hot path).
  local u, x, i = v[5], v[7], v[8]
  if v[11] then i = i .. v[11] .. (v[12] or '') .. (v[13] or '') end  -- prelude.lua's CLIENT_PARTS
  return h .. '\0' .. v[6] .. '\0' .. l .. '\0' .. d .. '\0' .. (v[2] or '') .. '\0'
    .. fmt(deadline - now) .. '\0' .. (v[9] or '') .. '\0' .. (v[10] or '') .. '\0' .. #u
    .. '\0' .. (x and #x or '') .. '\0' .. (i and #i or '') .. '\0' .. u .. (x or '') .. (i or '')
end
return fmt(deadline - now)
