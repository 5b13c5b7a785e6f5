-- GET: read a live session.
-- KEYS: the session's hash.
-- ARGV[4...]: h.
-- Returns its record, or nil.
local h = ARGV[4]
local f = load(h)
if not live(f) then return false end
return record(h, f)
