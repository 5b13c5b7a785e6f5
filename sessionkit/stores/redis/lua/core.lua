-- What every script starts with; the hot scripts (CHECK, TOUCH) need no more. With prelude.lua,
-- the only Lua that names keys (sessionkit/stores/redis/_schema.py names them in Python; a test
-- compares).
-- ARGV[1]: the bucket P, the prefix of every key; ARGV[2]: how long (ms) a record is kept past
-- its deadline for a manager to claim it; ARGV[3]: the operation id, or ''.
local P = ARGV[1]
local RETAIN = tonumber(ARGV[2])
local OP = ARGV[3]
local OUTCOME_MS = 600000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Lua 5.1's tostring() keeps 14 digits; microsecond timestamps need 16.
local function fmt(n) return string.format('%.0f', n) end
local D = P .. 'd'
local function skey(h) return P .. 's:' .. h end
local function ukey(u) return P .. 'u:' .. u end
local function okey(op) return P .. 'o:' .. op end
local function akey(h) return P .. 'a:' .. h end
-- Layout v2 (schema.user_field): a user with one session has it named by the field u of one
-- of 256 small hashes (n: the first byte of the username's SHA-1), not by a sorted set of their
-- own (CREATE). Here for TOUCH, which keeps the hash's TTL; one closure more per hot run.
-- fkey(nil, n): the n-th hash (SWEEP's cleanup).
local function fkey(u, n)
  if u then n = tonumber(string.sub(redis.sha1hex(u), 1, 2), 16) end
  return P .. 'U:' .. n
end
