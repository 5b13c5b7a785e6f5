-- The tail of a script that runs once per operation id (OP): the script's body is run(), and
-- KEEP(out) says whether its outcome must be kept (one that the data itself tells need not).
-- Sent again after it ran (the client library's retry), it answers the kept outcome.
local prior = redis.call('GET', okey(OP))
if prior then
  if string.sub(prior, 1, 1) == '[' then return cjson.decode(prior)[1] end
  return false
end
local out = run()
if KEEP(out) then redis.call('SET', okey(OP), cjson.encode({out}), 'PX', OUTCOME_MS) end
return out
