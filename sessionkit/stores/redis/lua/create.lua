-- CREATE: store a new session, evicting the user's oldest over the cap in the same step.
-- KEYS: the session's hash, the user's index, the user's field hash, the deadline index, the
--   outcome key.
-- ARGV[4...]: h, username, timeout (us), fixed ('1'/'0'), absolute timeout (us) or '',
--   the most sessions per user or '', has data ('1'/'0'), data, client JSON or '',
--   refuse ('1'/'0').
-- Returns the evicted records, oldest first; or -1, writing nothing, when refusing a user at
-- the cap. Runs once per operation id: it always keeps its outcome (a login sent again after
-- it ran, and after its session ended, must not make the session again).
local h, username, timeout, fixed = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local absolute_timeout, cap, has_data, data = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local client, refuse = ARGV[12], ARGV[13]
local function KEEP(out)
  if type(out) == 'table' then return slims(out) end
end
-- Name the new session in its user's index (layout v2): a user's only session in their field,
-- unless their name is longer than a small hash keeps compact (hash-max-listpack-value's
-- default, 64 bytes); a second session moves the field's to the sorted set, by its creation.
local FIELD_MAX = 64
local function index(U, ttl)
  local F, m = fkey(username), single_kept(username)
  if m then
    redis.call('ZADD', U, redis.call('HGET', skey(m), 'c'), m)
    keep(U, redis.call('PTTL', skey(m)))
    redis.call('HDEL', F, username)
  elseif #username <= FIELD_MAX and redis.call('EXISTS', U) == 0 then
    redis.call('HSET', F, username, h)
    keep(F, ttl)
    return
  end
  redis.call('ZADD', U, fmt(now), h)
  keep(U, ttl)
end
local function run()
  local U = ukey(username)
  local evicted = {}
  if cap ~= '' then
    local alive = {}
    for _, m in ipairs(redis.call('ZRANGE', U, 0, -1)) do
      local f = load(m)
      if f == nil then
        redis.call('ZREM', U, m)
      elseif live(f) then
        alive[#alive + 1] = {m, f}
      end
    end
    local m = single_kept(username)  -- one more, kept in the layout v2: in its place by creation
    if m then
      local f = load(m)
      if live(f) then
        local at = #alive + 1
        while at > 1 and tonumber(alive[at - 1][2].c) > tonumber(f.c) do at = at - 1 end
        table.insert(alive, at, {m, f})
      end
    end
    if refuse == '1' and #alive >= tonumber(cap) then return -1 end
    for i = 1, #alive - tonumber(cap) + 1 do
      local m, f = alive[i][1], alive[i][2]
      evicted[#evicted + 1] = ended(record(m, f), 'create')
      drop(m, f)
    end
  end
  local deadline = now + timeout
  local fields = {'u', username, 'c', fmt(now), 'l', fmt(now)}
  if absolute_timeout ~= '' then
    local absolute = now + tonumber(absolute_timeout)
    if absolute < deadline then deadline = absolute end
    fields[#fields + 1] = 'a'
    fields[#fields + 1] = fmt(absolute)
  end
  fields[#fields + 1] = 'd'
  fields[#fields + 1] = fmt(deadline)  -- no 'k' yet: the index holds 'd'
  if fixed == '1' then
    fields[#fields + 1] = 't'
    fields[#fields + 1] = fmt(timeout)
  end
  if has_data == '1' then
    fields[#fields + 1] = 'x'
    fields[#fields + 1] = data
  end
  if #client > 64 * #CLIENT_PARTS then  -- too long for pieces: one field
    fields[#fields + 1] = 'i'
    fields[#fields + 1] = client
  else  -- in pieces (prelude.lua's CLIENT_PARTS); none for no client
    for n, name in ipairs(CLIENT_PARTS) do
      local piece = string.sub(client, 64 * n - 63, 64 * n)
      if piece == '' then break end
      fields[#fields + 1] = name
      fields[#fields + 1] = piece
    end
  end
  local S = skey(h)
  redis.call('HSET', S, unpack(fields))
  local ttl = ttl_for(deadline + timeout)
  redis.call('PEXPIRE', S, ttl)
  index(U, ttl)
  redis.call('ZADD', D, fmt(deadline), h)
  keep(D, ttl)
  return evicted
end
