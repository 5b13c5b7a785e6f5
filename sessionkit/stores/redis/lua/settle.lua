-- SETTLE: what did an operation do, for a caller that never heard? An operation that has not
-- run is stopped for good; one that made a session nobody holds the key for is undone (a
-- login's session dropped, a rotation moved back).
-- KEYS: the lost operation's outcome key, the deadline index, the sessions its context names,
--   this settle's own outcome key.
-- ARGV[4...]: the lost operation's id, the store call it was (a LostCall), that call's context
--   (create: h; rotate: h, new h).
-- Returns {1 if it had applied else 0, the records it ended, each with its ending's entry id
-- (outbox.lua)}. Runs once per operation id.
local lost_op, call, ctx1, ctx2 = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local function KEEP(out)
  if #out[2] > 0 then return {out[1], slims(out[2])} end
end
local function run()
  local LK = okey(lost_op)
  local prior = redis.call('GET', LK)
  if not prior then
    redis.call('SET', LK, 'stopped', 'PX', OUTCOME_MS)
    return {0, {}}
  end
  if string.sub(prior, 1, 1) ~= '[' then return {0, {}} end
  redis.call('SET', LK, 'settled', 'PX', OUTCOME_MS)
  local out = cjson.decode(prior)[1]
  if call == 'create' then
    local f = load(ctx1)
    if f ~= nil then drop(ctx1, f) end
    if out == -1 then return {1, {}} end
    return {1, out}
  elseif call == 'rotate' then
    local f = load(ctx2)
    if out and f ~= nil then
      move(f, ctx2, ctx1)
      redis.call('DEL', akey(ctx1))  -- a renewal's alias: its key is the session's again
      redis.call('HDEL', skey(ctx1), 'p')
    end
    return {1, {}}
  elseif call == 'delete' or call == 'delete_user_session' then
    if out then return {1, {out}} end
    return {1, {}}
  elseif call == 'sweep' then
    for _, r in ipairs(out[3] or {}) do out[1][#out[1] + 1] = r end
    return {1, out[1]}
  elseif call == 'claim_expired' or call == 'delete_all' or call == 'delete_user' then
    return {1, out[1]}
  end
  return {1, out}
end
