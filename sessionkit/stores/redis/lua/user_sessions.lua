-- USER_SESSIONS: one page of a user's live sessions, by creation.
-- KEYS: the user's index, the deadline index.
-- ARGV[4...]: username, cursor score ('-inf' to begin), cursor member, count.
-- Returns {their records, oldest first, how many members the page read, the next cursor score,
-- member}.
local username, cscore, cmember, count = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local members, n, cs, cm = page(ukey(username), cscore, cmember, count)
local out = {}
for _, h in ipairs(members) do
  local f = load(h)
  if live(f) then out[#out + 1] = record(h, f) end
end
return {out, n, cs, cm}
