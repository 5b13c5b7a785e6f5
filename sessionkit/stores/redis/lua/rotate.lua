-- ROTATE: move a live session to a new key; of two rotations of one key, one wins. With a
-- grace (a renewal), the old hash stays an alias of the new one for that long; only the key
-- just replaced keeps one (this rotation ends the alias of the one before). A key replaced is
-- never rotated again through its alias.
-- KEYS: the old session's hash, the new one's, the deadline index, the outcome key.
-- ARGV[4...]: h, new h, the grace (ms; '0' for none).
-- Returns the record under the new hash, or nil if h was not live. Runs once per operation id.
local h, nh, grace = ARGV[4], ARGV[5], tonumber(ARGV[6])
local function KEEP(out) if out then return slim(out) end end
local function run()
  local f = load(h)
  if not live(f) then return false end
  move(f, h, nh)
  local NS = skey(nh)
  if f.p then redis.call('DEL', akey(f.p)) end
  f.g, f.p = fmt(now), nil
  redis.call('HSET', NS, 'g', f.g)
  if grace > 0 then
    redis.call('SET', akey(h), nh, 'PX', grace)
    redis.call('HSET', NS, 'p', h)
    f.p = h
  else
    redis.call('HDEL', NS, 'p')
  end
  return record(nh, f)
end
