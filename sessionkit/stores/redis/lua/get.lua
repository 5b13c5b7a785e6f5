-- GET: read a live session.
-- KEYS: the session's hash.
-- ARGV[4...]: h.
-- Returns its record, or nil.
local h, f = load_via(ARGV[4])
if not live(f) then return false end
return record(h, f)
