-- The outbox (after prelude.lua, in every script that ends sessions): each ending is recorded
-- by the step that made it, as an entry of the bucket's stream X, read through one consumer
-- group. The entries a script adds are delivered, before it returns (once.lua), to its caller's
-- consumer ME (the operation id's first part), so that between scripts no entry is ever left
-- undelivered: the caller holds them, reports them and acknowledges them (ACK); an entry held
-- too long unacknowledged (its worker died, or its call lost the reply) is taken by a sweep
-- (recover) and delivered again, under the same id.
local ME = string.match(OP, '^[^.]*')
local ADDED = 0
local OUTBOX_MS = 86400000  -- the stream's TTL, renewed by every ending
-- Record record r's ending by the store call `call`, given the reason `why` (or nil): the
-- entry's id becomes r[12].
local function ended(r, call, why)
  if ADDED == 0 and redis.call('EXISTS', X) == 0 then
    redis.call('XGROUP', 'CREATE', X, GROUP, '$', 'MKSTREAM')
  end
  if why then
    r[12] = redis.call('XADD', X, '*', 'c', call, 'r', cjson.encode(r), 'w', why)
  else
    r[12] = redis.call('XADD', X, '*', 'c', call, 'r', cjson.encode(r))
  end
  ADDED = ADDED + 1
  return r
end
-- Deliver to ME the entries this script added (the newest, and the only undelivered ones).
local function deliver()
  if ADDED > 0 then
    redis.call('XREADGROUP', 'GROUP', GROUP, ME, 'COUNT', ADDED, 'STREAMS', X, '>')
    redis.call('PEXPIRE', X, OUTBOX_MS)
  end
end
-- Endings taken and left unacknowledged for `idle` ms, delivered again to ME: records, each
-- with its entry id (r[12]), the call that ended it (r[13]) and the reason it was given (r[14],
-- false for none).
local function recover(idle, limit)
  if redis.call('EXISTS', X) == 0 then return {} end
  if #redis.call('XPENDING', X, GROUP, 'IDLE', idle, '-', '+', 1) == 0 then return {} end
  local out = {}
  local got = redis.call('XAUTOCLAIM', X, GROUP, ME, idle, '0-0', 'COUNT', limit)
  for _, e in ipairs(got[2]) do
    if e[2] then  -- fields c, call, r, record[, w, reason]
      local r = cjson.decode(e[2][4])
      r[12], r[13], r[14] = e[1], e[2][2], e[2][6] or false
      out[#out + 1] = r
    end
  end
  return out
end
-- Forget consumers that hold nothing and have not read for ten minutes (workers gone; one
-- that comes back is made again by its next read).
local function forget_consumers()
  if redis.call('EXISTS', X) == 0 then return end
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', X, GROUP)) do
    local f = {}
    for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
    if f.pending == 0 and f.idle > 600000 then
      redis.call('XGROUP', 'DELCONSUMER', X, GROUP, f.name)
    end
  end
end
