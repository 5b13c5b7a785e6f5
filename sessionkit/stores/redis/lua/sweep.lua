-- SWEEP: claim sessions that no process claimed (their process died), those at least a lag
-- past their deadline (their owners' timers had their chance); and take the endings that
-- were taken and left unacknowledged for `idle` ms (outbox.lua), to deliver them again.
-- KEYS: the deadline index, the outcome key.
-- ARGV[4...]: lag (us), the most sessions to claim, idle (ms; '' to take none).
-- Returns {the claimed records, how many index members it read, the endings taken again}.
-- Runs once per operation id.
local lag, limit, idle = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local FIELD_SAMPLE = 16  -- an EXISTS each, ~1.7 us: garbage is rare, and harmless to readers
local function KEEP(out)
  if #out[1] > 0 or #out[3] > 0 then return {slims(out[1]), out[2], slims(out[3])} end
end
local function run()
  local claimed = {}
  local due = redis.call('ZRANGEBYSCORE', D, '-inf', fmt(now - lag), 'LIMIT', 0, limit)
  for _, h in ipairs(due) do
    local f = load(h)
    if f == nil then
      redis.call('ZREM', D, h)
    elseif tonumber(f.d) <= now then
      claimed[#claimed + 1] = ended(record(h, f), 'sweep')
      drop(h, f)
    else  -- restarted since the index last moved: bring it up to date
      redis.call('ZADD', D, f.d, h)
      redis.call('HSET', skey(h), 'k', f.d)
    end
  end
  -- Fields (layout v2) naming a session whose hash lapsed while no manager ran, which no
  -- index leads to: a sample of one of the 256 hashes, picked by the clock, each run.
  local F = fkey(nil, now % 256)
  local sample = redis.call('HRANDFIELD', F, FIELD_SAMPLE, 'WITHVALUES')
  for i = 1, #sample, 2 do
    if redis.call('EXISTS', skey(sample[i + 1])) == 0 then redis.call('HDEL', F, sample[i]) end
  end
  local again = {}
  if idle ~= '' then
    again = recover(idle, limit)
    forget_consumers()
  end
  return {claimed, #due, again}
end
