-- DELETE_ALL: end the live sessions of one page, created up to `upto` (those live when the
-- call began).
-- KEYS: the deadline index, the outcome key.
-- ARGV[4...]: cursor score ('-inf' to begin), cursor member, count, upto ('' to begin: now).
-- Returns {the records, how many members the page read, the next cursor score, member, upto}.
-- Runs once per operation id.
local cscore, cmember, count, upto = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local function KEEP(out)
  if #out[1] > 0 then return {slims(out[1]), out[2], out[3], out[4], out[5]} end
end
local function run()
  if upto == '' then upto = fmt(now) end
  local members, n, cs, cm = page(D, cscore, cmember, count)
  local out = {}
  for _, h in ipairs(members) do
    local f = load(h)
    if live(f) and tonumber(f.c) <= tonumber(upto) then
      out[#out + 1] = ended(record(h, f), 'delete_all')
      drop(h, f)
    elseif f == nil then
      redis.call('ZREM', D, h)
    end
  end
  return {out, n, cs, cm, upto}
end
