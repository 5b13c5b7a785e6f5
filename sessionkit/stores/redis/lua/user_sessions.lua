-- USER_SESSIONS: one page of a user's live sessions, by creation.
-- KEYS: the user's index, the user's field hash, the deadline index.
-- ARGV[4...]: username, cursor score ('-inf' to begin), cursor member, count.
-- Returns {their records, how many members of the index the page read, the next cursor score,
-- member}: oldest first, but the first page's last record may be the session of the user's field
-- (layout v2), which the caller puts in its place.
local username, cscore, cmember, count = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local members, n, cs, cm = page(ukey(username), cscore, cmember, count)
local out = {}
for _, h in ipairs(members) do
  local f = load(h)
  if live(f) then out[#out + 1] = record(h, f) end
end
if cscore == '-inf' and cmember == '' then  -- the first page adds the user's field's session
  local h = single(username)
  if h then
    local f = load(h)
    if live(f) then out[#out + 1] = record(h, f) end
  end
end
return {out, n, cs, cm}
