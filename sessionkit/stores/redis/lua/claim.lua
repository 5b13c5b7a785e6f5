-- CLAIM: remove, of the given sessions, those past their deadline (of all the processes
-- claiming one session, one gets it).
-- KEYS: the deadline index, each session's hash, the outcome key.
-- ARGV[4...]: h...
-- Returns {the claimed records, the live ones as {h, microseconds left, capped 1/0}}. Runs once
-- per operation id.
local function KEEP(out)
  if #out[1] > 0 then return {slims(out[1]), out[2]} end
end
local function run()
  local claimed, pending = {}, {}
  for i = 4, #ARGV do
    local h = ARGV[i]
    local f = load(h)
    if f ~= nil then
      local d = tonumber(f.d)
      if d <= now then
        claimed[#claimed + 1] = ended(record(h, f), 'claim_expired')
        drop(h, f)
      else
        local capped = 0
        if f.a and tonumber(f.a) <= d then capped = 1 end
        pending[#pending + 1] = {h, fmt(d - now), capped}
      end
    end
  end
  return {claimed, pending}
end
