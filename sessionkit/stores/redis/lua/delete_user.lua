-- DELETE_USER: end the live sessions of one user in one page, by creation, created up to
-- `upto` (those live when the call began).
-- KEYS: the user's index, the user's field hash, the deadline index, the outcome key.
-- ARGV[4...]: username, cursor score ('-inf' to begin), cursor member, count, upto ('' to
--   begin: now).
-- Returns {their records, how many members of the index the page read, the next cursor score,
-- member, upto}: oldest first, but the first page's last record may be the session of the user's
-- field (layout v2), which the caller puts in its place. Runs once per operation id.
local username, cscore, cmember, count, upto = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local function KEEP(out)
  if #out[1] > 0 then return {slims(out[1]), out[2], out[3], out[4], out[5]} end
end
local function run()
  if upto == '' then upto = fmt(now) end
  local members, n, cs, cm = page(ukey(username), cscore, cmember, count)
  local out = {}
  if cscore == '-inf' and cmember == '' then  -- the first page ends the field's session too
    local h = single_kept(username)
    if h then members[#members + 1] = h end
  end
  for _, h in ipairs(members) do
    local f = load(h)
    if live(f) and tonumber(f.c) <= tonumber(upto) then
      out[#out + 1] = ended(record(h, f), 'delete_user')
      drop(h, f)
    end
  end
  return {out, n, cs, cm, upto}
end
