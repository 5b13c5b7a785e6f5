-- DELETE_USER: end every live session of one user.
-- KEYS: the user's index, the deadline index, the outcome key.
-- ARGV[4...]: username.
-- Returns their records, oldest first. Runs once per operation id.
local username = ARGV[4]
local function KEEP(out) if #out > 0 then return slims(out) end end
local function run()
  local out = {}
  for _, h in ipairs(redis.call('ZRANGE', ukey(username), 0, -1)) do
    local f = load(h)
    if live(f) then
      out[#out + 1] = record(h, f)
      drop(h, f)
    end
  end
  return out
end
