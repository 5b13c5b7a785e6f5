-- SWEEP: claim sessions that no process claimed (their process died), those at least a lag
-- past their deadline (their owners' timers had their chance).
-- KEYS: the deadline index, the outcome key.
-- ARGV[4...]: lag (us), the most sessions to claim.
-- Returns {the claimed records, how many index members it read}. Runs once per operation id.
local lag, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local function KEEP(out) if #out[1] > 0 then return {slims(out[1]), out[2]} end end
local function run()
  local claimed = {}
  local due = redis.call('ZRANGEBYSCORE', D, '-inf', fmt(now - lag), 'LIMIT', 0, limit)
  for _, h in ipairs(due) do
    local f = load(h)
    if f == nil then
      redis.call('ZREM', D, h)
    elseif tonumber(f.d) <= now then
      claimed[#claimed + 1] = record(h, f)
      drop(h, f)
    else  -- restarted since the index last moved: bring it up to date
      redis.call('ZADD', D, f.d, h)
      redis.call('HSET', skey(h), 'k', f.d)
    end
  end
  return {claimed, #due}
end
