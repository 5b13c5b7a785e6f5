-- ACK: endings reported: acknowledged, and deleted from the outbox (its one group has read
-- them; nothing else needs them).
-- KEYS: the outbox.
-- ARGV[4...]: entry ids.
-- Returns how many were still pending.
local ids = {unpack(ARGV, 4)}
local n = redis.call('XACK', X, GROUP, unpack(ids))
redis.call('XDEL', X, unpack(ids))
return n
