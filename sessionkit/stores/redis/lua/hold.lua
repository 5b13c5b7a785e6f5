-- HOLD: endings a consumer is still reporting: their idle time starts again, so that no sweep
-- delivers them again meanwhile. With `fresh`, only those never delivered to another consumer
-- (a call that lost its reply, settled: a sweep may have taken them since).
-- KEYS: the outbox.
-- ARGV[4...]: the consumer, fresh ('1'/'0'), entry ids.
-- Returns the ids now held by the consumer.
local me, fresh = ARGV[4], ARGV[5] == '1'
local held = {}
if redis.call('EXISTS', X) == 0 then return held end
for i = 6, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', X, GROUP, id, id, 1)
  if #p > 0 and p[1][2] == me and (not fresh or p[1][4] == 1) then
    redis.call('XCLAIM', X, GROUP, me, 0, id, 'JUSTID')
    held[#held + 1] = id
  end
end
return held
