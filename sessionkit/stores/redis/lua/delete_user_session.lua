-- DELETE_USER_SESSION: end one live session of one user, named by its id (h).
-- KEYS: the user's index, the user's field hash, the session's hash, the deadline index, the
--   outcome key.
-- ARGV[4...]: username, h.
-- Returns its record, or nil if the user has no such live session. Runs once per operation id.
local username, h = ARGV[4], ARGV[5]
local function KEEP(out) if out then return slim(out) end end
local function run()
  if not redis.call('ZSCORE', ukey(username), h) and single(username) ~= h then return false end
  local f = load(h)
  if not live(f) or f.u ~= username then return false end
  drop(h, f)
  return ended(record(h, f), 'delete_user_session')
end
