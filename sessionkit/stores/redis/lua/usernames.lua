-- USERNAMES: one page of the usernames of live sessions.
-- KEYS: the deadline index.
-- ARGV[4...]: cursor score ('-inf' to begin), cursor member, count.
-- Returns {the hash, creation time and username of each live session in the page (flat), how
-- many members the page read, the next cursor score, member}.
local members, n, cs, cm = page(D, ARGV[4], ARGV[5], tonumber(ARGV[6]))
local names = {}
for _, h in ipairs(members) do
  local f = redis.call('HMGET', skey(h), 'd', 'c', 'u')
  if f[1] and tonumber(f[1]) > now then
    names[#names + 1] = h
    names[#names + 1] = f[2]
    names[#names + 1] = f[3]
  end
end
return {names, n, cs, cm}
