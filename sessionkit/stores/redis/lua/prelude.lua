-- Shared by every script but the hot ones (after core.lua).
local X = P .. 'x'  -- the outbox: a stream of endings (outbox.lua)
local GROUP = 'g'  -- its one consumer group
-- The h the user's field names (layout v2, core.lua's fkey), or false.
local function single(u) return redis.call('HGET', fkey(u), u) end
-- The same, for a script that writes: a field naming a session whose hash is gone (it lapsed
-- while no manager ran) is dropped, and false returned.
local function single_kept(u)
  local h = single(u)
  if h and redis.call('EXISTS', skey(h)) == 0 then
    redis.call('HDEL', fkey(u), u)
    return false
  end
  return h
end
local function ttl_for(deadline)
  local left = math.ceil((deadline - now) / 1000)
  if left < 0 then left = 0 end
  return left + RETAIN
end
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
-- The recorded client's JSON (schema.Field.CLIENT) in pieces of at most 64 bytes, this many at
-- most: a longer field value (hash-max-listpack-value's default) would turn the session's whole
-- hash into a hashtable, ~300 B more (a browser's client is ~140 B). A longer client is one field.
-- TOUCH's read-back names the same fields.
local CLIENT_PARTS = {'i', 'i2', 'i3', 'i4'}
local function load(h)
  local raw = redis.call('HGETALL', skey(h))
  if #raw == 0 then return nil end
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  if f.i2 then  -- the client in pieces: put back together
    local pieces = {}
    for n, name in ipairs(CLIENT_PARTS) do
      if f[name] == nil then break end
      pieces[n] = f[name]
    end
    f.i = table.concat(pieces)
  end
  return f
end
local function live(f) return f ~= nil and tonumber(f.d) > now end
-- A session by its key's hash, or, during a renewal's grace, by the hash of the key it had:
-- the hash it is under, and its fields (nil if neither names one).
local function load_via(h)
  local f = load(h)
  if f ~= nil then return h, f end
  local nh = redis.call('GET', akey(h))
  if not nh then return h, nil end
  return nh, load(nh)
end
-- A session record, in schema.RECORD's order.
local function record(h, f)
  return {
    h, f.u, f.c, f.l, f.d, f.a or false, f.x or false, fmt(tonumber(f.d) - now), f.i or false,
    f.r or false, f.g or false,
  }
end
-- What an outcome keeps of a record, or of a list of them: no data, no client; its ending's
-- entry id, call and reason (r[12], r[13], r[14]; outbox.lua) where it has them.
local function slim(r)
  return {r[1], r[2], r[3], r[4], r[5], r[6], false, r[8], false, false, false, r[12], r[13], r[14]}
end
local function slims(rs)
  local out = {}
  for i, r in ipairs(rs) do out[i] = slim(r) end
  return out
end
local function drop(h, f)
  redis.call('DEL', skey(h))
  if f.p then redis.call('DEL', akey(f.p)) end  -- the alias dies with its session
  redis.call('ZREM', D, h)
  redis.call('ZREM', ukey(f.u), h)
  if single(f.u) == h then redis.call('HDEL', fkey(f.u), f.u) end
end
-- Move session f from hash h to hash nh (a rotation, or its undoing). RENAME keeps the TTL.
-- Each index gains the new member before it loses the old one: a set emptied by ZREM is
-- deleted, and ZADD would bring it back without a TTL.
local function move(f, h, nh)
  redis.call('RENAME', skey(h), skey(nh))
  if single(f.u) == h then  -- the user's field names it: it names the new hash instead
    redis.call('HSET', fkey(f.u), f.u, nh)
  else
    local U = ukey(f.u)
    redis.call('ZADD', U, f.c, nh)
    redis.call('ZREM', U, h)
  end
  redis.call('ZADD', D, f.k or f.d, nh)
  redis.call('ZREM', D, h)
end
-- A listing walks an index (the deadlines, or a user's sessions by creation) by score, from a
-- cursor (score, member) past which it has read, not by offset: members that other managers
-- remove meanwhile shift no page, and a member whose score moves (a restart, a sweep) only
-- moves later, still ahead. Members sharing the cursor's score sort by member, so those up to
-- the cursor's are skipped. A page is short: no script holds the server for long.
local function page(index, cscore, cmember, count)
  local rows = redis.call('ZRANGEBYSCORE', index, cscore, '+inf', 'WITHSCORES', 'LIMIT', 0, count)
  local out = {}
  for i = 1, #rows, 2 do
    if not (rows[i + 1] == cscore and rows[i] <= cmember) then out[#out + 1] = rows[i] end
  end
  local n = #rows
  if n == 0 then return out, 0, cscore, cmember end
  return out, n / 2, rows[n], rows[n - 1]
end
