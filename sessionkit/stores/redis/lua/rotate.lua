-- ROTATE: move a live session to a new key; of two rotations of one key, one wins.
-- KEYS: the old session's hash, the new one's, the deadline index, the outcome key.
-- ARGV[4...]: h, new h.
-- Returns the record under the new hash, or nil if h was not live. Runs once per operation id.
local h, nh = ARGV[4], ARGV[5]
local function KEEP(out) if out then return slim(out) end end
local function run()
  local f = load(h)
  if not live(f) then return false end
  move(f, h, nh)
  return record(nh, f)
end
