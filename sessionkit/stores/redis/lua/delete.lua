-- DELETE: end a live session.
-- KEYS: the session's hash, the deadline index, the outcome key.
-- ARGV[4...]: h, the reason the caller gives (kept with the ending in the outbox).
-- Returns the record as it was, or nil if it was not live. Runs once per operation id.
-- A key replaced by a renewal ends the session it moved to, during the grace.
local function KEEP(out) if out then return slim(out) end end
local function run()
  local h, f = load_via(ARGV[4])
  if not live(f) then return false end
  drop(h, f)
  return ended(record(h, f), 'delete', ARGV[5])
end
