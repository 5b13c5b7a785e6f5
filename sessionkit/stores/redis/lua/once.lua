-- The tail of a script that runs once per operation id (OP): the script's body is run(), and
-- KEEP(out) is what of its outcome must be kept, or nil: nothing when nothing ended (or the data
-- itself tells), and never session data (slim records). Sent again after it ran (the client
-- library's retry), it answers the kept outcome.
local prior = redis.call('GET', okey(OP))
if prior then
  if string.sub(prior, 1, 1) == '[' then return cjson.decode(prior)[1] end
  return false
end
local out = run()
deliver()
local kept = KEEP(out)
if kept then redis.call('SET', okey(OP), cjson.encode({kept}), 'PX', OUTCOME_MS) end
return out
