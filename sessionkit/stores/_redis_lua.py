"""The Lua scripts behind :class:`~sessionkit.stores.redis.RedisStore`.

Each public operation is one script, so it is one round trip and one atomic step on the server.
Every script gets ``ARGV[1]`` = the prefix ``P`` of its bucket's keys (the store's prefix on a
single server; that prefix and the bucket's hash tag on a cluster), ``ARGV[2]`` = how long (ms)
a session's record is kept past its deadline for a manager to claim it, and ``ARGV[3]`` = an
operation id (empty for a script that changes nothing worth reporting); its own arguments
follow. ``KEYS`` declares the keys known before the script runs; those it finds in an index
(a user's other sessions, the sessions due in a sweep) carry the same prefix, so the same slot.

A script that ends sessions or makes one runs *once* per operation id: its outcome is kept
under ``P o:<op>`` for ``OUTCOME_MS``, and the same script sent again (the client library's
retry after a dropped connection) returns that outcome instead of applying twice. ``SETTLE``
asks what an operation did, for a caller that never heard: it returns the kept outcome, or
stops the operation from ever applying if it has not run yet (a script still on its way).

Layout under the prefix ``P`` (``h`` is the SHA-256 hex digest of a session key):

- ``P s:<h>``: hash of one session: ``u`` username, ``c`` created, ``l`` last active,
  ``d`` deadline, ``a`` absolute deadline, ``t`` the session's own idle timeout, ``x`` data
  (JSON text), ``i`` the client recorded at login (JSON text). Times are microseconds on the server's clock (``TIME``); absent field = none.
- ``P u:<username>``: sorted set of the user's session hashes, scored by creation time.
- ``P d``: sorted set of every session hash, scored by deadline, which may lag behind (moved
  only when less than half a timeout is left); the sweep and the listings read it.
- ``P o:<op>``: the outcome of one operation (JSON), or ``stopped`` / ``settled``.

Every key carries a TTL: a session's hash lives until its deadline plus the retention (at least:
its TTL moves with the indexed deadline, plus a timeout), and an index at least as long as the
longest-lived member it was last given. Indexes may hold members
whose hash has already gone (a retention lapsed with no manager running); scripts skip those
and drop them where they meet them.
"""

from __future__ import annotations

__all__ = (
    "CHECK",
    "CLAIM",
    "COUNT",
    "CREATE",
    "DELETE",
    "DELETE_ALL",
    "DELETE_USER",
    "DELETE_USER_SESSION",
    "GET",
    "ROTATE",
    "SETTLE",
    "SET_DATA",
    "SWEEP",
    "TOUCH",
    "USERNAMES",
    "USER_SESSIONS",
)

# Lua 5.1's tostring() keeps 14 digits; microsecond timestamps need 16, hence fmt().
# What every script starts with. The hot scripts (CHECK, TOUCH) need no more: each function
# defined below is a closure made again on every run of a script that includes it.
_CORE = """
local P = ARGV[1]
local RETAIN = tonumber(ARGV[2])
local OUTCOME_MS = 600000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(n) return string.format('%.0f', n) end
"""

_PRELUDE = (
    _CORE
    + """
local D = P .. 'd'
local function skey(h) return P .. 's:' .. h end
local function ukey(u) return P .. 'u:' .. u end
local function ttl_for(deadline)
  local left = math.ceil((deadline - now) / 1000)
  if left < 0 then left = 0 end
  return left + RETAIN
end
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function load(h)
  local raw = redis.call('HGETALL', skey(h))
  if #raw == 0 then return nil end
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
local function live(f) return f ~= nil and tonumber(f.d) > now end
local function record(h, f)
  return {h, f.u, f.c, f.l, f.d, f.a or false, f.x or false, fmt(tonumber(f.d) - now), f.i or false}
end
local function drop(h, f)
  redis.call('DEL', skey(h))
  redis.call('ZREM', D, h)
  redis.call('ZREM', ukey(f.u), h)
end
-- Move session f from hash h to hash nh (a rotation, or its undoing). RENAME keeps the TTL.
-- Each index gains the new member before it loses the old one: a set emptied by ZREM is
-- deleted, and ZADD would bring it back without a TTL.
local function move(f, h, nh)
  redis.call('RENAME', skey(h), skey(nh))
  local U = ukey(f.u)
  redis.call('ZADD', U, f.c, nh)
  redis.call('ZREM', U, h)
  redis.call('ZADD', D, f.k or f.d, nh)
  redis.call('ZREM', D, h)
end
"""
)

# The tail of a script that runs once per operation id (ARGV[3]): its body is the function run.
_ONCE = """
end
local OK = P .. 'o:' .. ARGV[3]
local prior = redis.call('GET', OK)
if prior then
  if string.sub(prior, 1, 1) == '[' then return cjson.decode(prior)[1] end
  return false
end
local out = run()
if KEEP(out) then redis.call('SET', OK, cjson.encode({out}), 'PX', OUTCOME_MS) end
return out
"""


def _once(body: str, *, keep: str = "true") -> str:
    # ``keep``: a Lua expression on ``out``, whether to keep the outcome (a script whose
    # outcome can be told again from the data itself need not keep it).
    keeper = f"local function KEEP(out) return {keep} end\n"
    return _PRELUDE + keeper + "local function run()\n" + body + _ONCE


# ARGV[4...]: h, username, timeout_us, fixed ('1'/'0'), absolute_us or '', max_per_user or '',
# has_data ('1'/'0'), data, client JSON or '', refuse ('1'/'0'). Returns the evicted records,
# oldest first, or -1 (and writes nothing) when refusing a user at the cap.
CREATE = _once(
    """
local h, user, timeout = ARGV[4], ARGV[5], tonumber(ARGV[6])
-- Sent again after it ran (a retry): the key is fresh, so its session tells it ran; an
-- outcome with evictions was kept and answered above.
if redis.call('EXISTS', skey(h)) == 1 then return {} end
local U = ukey(user)
local evicted = {}
if ARGV[9] ~= '' then
  local alive = {}
  for _, m in ipairs(redis.call('ZRANGE', U, 0, -1)) do
    local f = load(m)
    if f == nil then
      redis.call('ZREM', U, m)
    elseif live(f) then
      alive[#alive + 1] = {m, f}
    end
  end
  if ARGV[13] == '1' and #alive >= tonumber(ARGV[9]) then return -1 end
  for i = 1, #alive - tonumber(ARGV[9]) + 1 do
    local m, f = alive[i][1], alive[i][2]
    evicted[#evicted + 1] = record(m, f)
    drop(m, f)
  end
end
local deadline = now + timeout
local fields = {'u', user, 'c', fmt(now), 'l', fmt(now)}
if ARGV[8] ~= '' then
  local absolute = now + tonumber(ARGV[8])
  if absolute < deadline then deadline = absolute end
  fields[#fields + 1] = 'a'
  fields[#fields + 1] = fmt(absolute)
end
fields[#fields + 1] = 'd'
fields[#fields + 1] = fmt(deadline)
fields[#fields + 1] = 'k'
fields[#fields + 1] = fmt(deadline)
if ARGV[7] == '1' then
  fields[#fields + 1] = 't'
  fields[#fields + 1] = fmt(timeout)
end
if ARGV[10] == '1' then
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = ARGV[11]
end
if ARGV[12] ~= '' then
  fields[#fields + 1] = 'i'
  fields[#fields + 1] = ARGV[12]
end
local S = skey(h)
redis.call('HSET', S, unpack(fields))
local ttl = ttl_for(deadline + timeout)
redis.call('PEXPIRE', S, ttl)
redis.call('ZADD', U, fmt(now), h)
keep(U, ttl)
redis.call('ZADD', D, fmt(deadline), h)
keep(D, ttl)
return evicted
""",
    keep="type(out) == 'table' and #out > 0",
)

# ARGV[4...]: h. Returns microseconds left, or nil.
CHECK = (
    _CORE
    + """
local d = redis.call('HGET', KEYS[1], 'd')
if not d or tonumber(d) <= now then return false end
return fmt(tonumber(d) - now)
"""
)

# ARGV[4...]: h, timeout_us, and '1' to read the session back. Returns microseconds left until the
# new deadline (or the record, when asked), or nil. The hot path: one read, one write; the index
# and the TTLs move only when the indexed deadline ('k') is less than half a timeout away.
TOUCH = (
    _CORE
    + """
local S = KEYS[1]
local v
if ARGV[6] == '1' then
  v = redis.call('HMGET', S, 'd', 'a', 't', 'k', 'u', 'c', 'x', 'i')
else
  v = redis.call('HMGET', S, 'd', 'a', 't', 'k')
end
if not v[1] or tonumber(v[1]) <= now then return false end
local timeout = tonumber(v[3] or ARGV[5])
local deadline = now + timeout
if v[2] and tonumber(v[2]) < deadline then deadline = tonumber(v[2]) end
local d, l = fmt(deadline), fmt(now)
if tonumber(v[4] or 0) - now < timeout / 2 then
  redis.call('HSET', S, 'l', l, 'd', d, 'k', d)
  local D = KEYS[2]
  redis.call('ZADD', D, d, ARGV[4])
  local ttl = math.ceil(timeout * 2 / 1000) + RETAIN  -- (deadline + timeout - now) / 1000
  redis.call('PEXPIRE', S, ttl)
  for _, key in ipairs({D, P .. 'u:' .. (v[5] or redis.call('HGET', S, 'u'))}) do
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  end
else
  redis.call('HSET', S, 'l', l, 'd', d)
end
if ARGV[6] == '1' then
  return {ARGV[4], v[5], v[6], l, d, v[2], v[7], fmt(deadline - now), v[8]}
end
return fmt(deadline - now)
"""
)

# ARGV[4...]: h. Returns the live record, or nil.
GET = (
    _PRELUDE
    + """
local f = load(ARGV[4])
if not live(f) then return false end
return record(ARGV[4], f)
"""
)

# ARGV[4...]: h, has_data ('1'/'0'), data. Returns 1 if the session was live and now holds data.
SET_DATA = (
    _PRELUDE
    + """
local S = skey(ARGV[4])
local d = redis.call('HGET', S, 'd')
if not d or tonumber(d) <= now then return 0 end
if ARGV[5] == '1' then
  redis.call('HSET', S, 'x', ARGV[6])
else
  redis.call('HDEL', S, 'x')
end
return 1
"""
)

# ARGV[4...]: h. Returns the record as it was, or nil if it was not live.
DELETE = _once(
    """
local f = load(ARGV[4])
if not live(f) then return false end
drop(ARGV[4], f)
return record(ARGV[4], f)
"""
)

# ARGV[4...]: h, new_h. Returns the record under the new hash, or nil if h was not live.
ROTATE = _once(
    """
local h, nh = ARGV[4], ARGV[5]
local f = load(h)
if not live(f) then return false end
move(f, h, nh)
return record(nh, f)
"""
)

# ARGV[4...]: h... Returns {claimed records, pending {h, microseconds left, capped 1/0}}.
CLAIM = _once(
    """
local claimed, pending = {}, {}
for i = 4, #ARGV do
  local h = ARGV[i]
  local f = load(h)
  if f ~= nil then
    local d = tonumber(f.d)
    if d <= now then
      claimed[#claimed + 1] = record(h, f)
      drop(h, f)
    else
      local capped = 0
      if f.a and tonumber(f.a) <= d then capped = 1 end
      pending[#pending + 1] = {h, fmt(d - now), capped}
    end
  end
end
return {claimed, pending}
"""
)

# ARGV[4...]: lag_us, limit. Claims sessions at least lag_us past their deadline (their owners'
# timers had their chance). Returns the claimed records.
SWEEP = _once(
    """
local claimed = {}
local due = redis.call('ZRANGEBYSCORE', D, '-inf', fmt(now - tonumber(ARGV[4])),
  'LIMIT', 0, tonumber(ARGV[5]))
for _, h in ipairs(due) do
  local f = load(h)
  if f == nil then
    redis.call('ZREM', D, h)
  elseif tonumber(f.d) <= now then
    claimed[#claimed + 1] = record(h, f)
    drop(h, f)
  else  -- restarted since the index last moved: bring it up to date
    redis.call('ZADD', D, f.d, h)
    redis.call('HSET', skey(h), 'k', f.d)
  end
end
return claimed
"""
)

# A listing walks the deadline index by score, from a cursor (score, member) past which it has
# read, not by offset: members that other managers remove meanwhile shift no page, and a member
# whose score moves (a restart, a sweep) only moves later, still ahead. Members sharing the
# cursor's score sort by member, so those up to the cursor's are skipped.
_PAGE = """
local function page(cscore, cmember, count)
  local rows = redis.call('ZRANGEBYSCORE', D, cscore, '+inf', 'WITHSCORES', 'LIMIT', 0, count)
  local out = {}
  for i = 1, #rows, 2 do
    if not (rows[i + 1] == cscore and rows[i] <= cmember) then out[#out + 1] = rows[i] end
  end
  local n = #rows
  if n == 0 then return out, 0, cscore, cmember end
  return out, n / 2, rows[n], rows[n - 1]
end
"""

# ARGV[4...]: cursor score ('-inf' to begin), cursor member, count. Returns {the creation time
# and username of each live session in the page (flat), how many members the page read, the
# next cursor score, member}.
USERNAMES = (
    _PRELUDE
    + _PAGE
    + """
local members, n, cs, cm = page(ARGV[4], ARGV[5], tonumber(ARGV[6]))
local names = {}
for _, h in ipairs(members) do
  local f = redis.call('HMGET', skey(h), 'd', 'c', 'u')
  if f[1] and tonumber(f[1]) > now then
    names[#names + 1] = f[2]
    names[#names + 1] = f[3]
  end
end
return {names, n, cs, cm}
"""
)

# ARGV[4...]: (none). Returns the number of live sessions: those indexed past now, and those
# whose index lags (restarted since it last moved) and are live, which it brings up to date.
COUNT = (
    _PRELUDE
    + """
local n = redis.call('ZCOUNT', D, '(' .. fmt(now), '+inf')
for _, h in ipairs(redis.call('ZRANGEBYSCORE', D, '-inf', fmt(now))) do
  local d = redis.call('HGET', skey(h), 'd')
  if d and tonumber(d) > now then
    redis.call('ZADD', D, d, h)
    redis.call('HSET', skey(h), 'k', d)
    n = n + 1
  end
end
return n
"""
)

# ARGV[4...]: username. Returns the user's live records, oldest first.
USER_SESSIONS = (
    _PRELUDE
    + """
local out = {}
for _, h in ipairs(redis.call('ZRANGE', ukey(ARGV[4]), 0, -1)) do
  local f = load(h)
  if live(f) then out[#out + 1] = record(h, f) end
end
return out
"""
)

# ARGV[4...]: username. Ends the user's live sessions; returns their records, oldest first.
DELETE_USER = _once(
    """
local out = {}
for _, h in ipairs(redis.call('ZRANGE', ukey(ARGV[4]), 0, -1)) do
  local f = load(h)
  if live(f) then
    out[#out + 1] = record(h, f)
    drop(h, f)
  end
end
return out
"""
)

# ARGV[4...]: cursor score ('-inf' to begin), cursor member, count, upto ('' to begin: now).
# Ends the live sessions in the page, created up to ``upto`` (the sessions live when the call
# began); returns {records, how many members the page read, next cursor score, member, upto}.
DELETE_ALL = _once(
    _PAGE
    + """
local upto = ARGV[7]
if upto == '' then upto = fmt(now) end
local members, n, cs, cm = page(ARGV[4], ARGV[5], tonumber(ARGV[6]))
local out = {}
for _, h in ipairs(members) do
  local f = load(h)
  if live(f) and tonumber(f.c) <= tonumber(upto) then
    out[#out + 1] = record(h, f)
    drop(h, f)
  elseif f == nil then
    redis.call('ZREM', D, h)
  end
end
return {out, n, cs, cm, upto}
"""
)

# ARGV[4...]: the lost operation's id, the store call it was ("create", "rotate", ...), that
# call's context (create: h; rotate: h, new h). Returns {1 if it had applied, the records it
# ended}. An operation that has not run is stopped for good; one that made a session nobody
# holds the key for is undone: a login's session is dropped, a rotation moved back.
SETTLE = _once(
    """
local LK = P .. 'o:' .. ARGV[4]
local prior = redis.call('GET', LK)
if not prior and ARGV[5] == 'create' then  -- a login keeps no outcome without evictions
  local f = load(ARGV[6])
  if f ~= nil then
    drop(ARGV[6], f)
    redis.call('SET', LK, 'settled', 'PX', OUTCOME_MS)
    return {1, {}}
  end
end
if not prior then
  redis.call('SET', LK, 'stopped', 'PX', OUTCOME_MS)
  return {0, {}}
end
if string.sub(prior, 1, 1) ~= '[' then return {0, {}} end
redis.call('SET', LK, 'settled', 'PX', OUTCOME_MS)
local out, call = cjson.decode(prior)[1], ARGV[5]
if call == 'create' then
  local f = load(ARGV[6])
  if f ~= nil then drop(ARGV[6], f) end
  if out == -1 then return {1, {}} end
  return {1, out}
elseif call == 'rotate' then
  local h, nh = ARGV[6], ARGV[7]
  local f = load(nh)
  if out and f ~= nil then move(f, nh, h) end
  return {1, {}}
elseif call == 'delete' or call == 'delete_user_session' then
  if out then return {1, {out}} end
  return {1, {}}
elseif call == 'claim_expired' or call == 'delete_all' then
  return {1, out[1]}
end
return {1, out}
"""
)

# ARGV: username, h. Ends one live session of the user; returns its record, or nil if the user
# has no such live session.
DELETE_USER_SESSION = _once(
    """
local user, h = ARGV[4], ARGV[5]
if not redis.call('ZSCORE', ukey(user), h) then return false end
local f = load(h)
if not live(f) or f.u ~= user then return false end
drop(h, f)
return record(h, f)
"""
)
