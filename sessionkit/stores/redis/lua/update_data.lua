-- UPDATE_DATA: merge a JSON object into a live session's data at the top level, in one step.
-- KEYS: the session's hash.
-- ARGV[4...]: h, the changes: a JSON object as sessionkit writes one (compact, keys escaped
--   the one way Python's json.dumps escapes them).
-- Returns the merged data (JSON text), nil if the session is not live, or -1, writing
-- nothing, if its data is not a JSON object.
-- Members are split as text, never decoded: cjson would turn an integer over 2^53 into a
-- float and an empty list into {}. A member whose key is already there keeps its place, as
-- Python's dict.update() keeps it; the others follow in their order.
local changes = ARGV[5]
-- The index just past the JSON string that starts (with its quote) at i.
local function past_string(s, i)
  local p = i + 1
  while true do
    local q = string.find(s, '["\\]', p)
    if string.sub(s, q, q) == '"' then return q + 1 end
    p = q + 2  -- an escape: skip the escaped character
  end
end
-- The index of the ',' or '}' that ends the value starting at i.
local function value_end(s, i)
  local depth, p = 0, i
  while true do
    local q = string.find(s, '["{}%[%],]', p)
    local c = string.sub(s, q, q)
    if c == '"' then
      p = past_string(s, q)
    elseif c == '{' or c == '[' then
      depth, p = depth + 1, q + 1
    elseif depth == 0 then  -- a ',' or closing bracket of the object itself
      return q
    else
      if c ~= ',' then depth = depth - 1 end
      p = q + 1
    end
  end
end
-- A JSON object's members: their keys in order, and each key's value, as text.
local function members(s, order, values)
  local i = 2
  if string.sub(s, i, i) == '}' then return end
  while true do
    local k_end = past_string(s, i)
    local key = string.sub(s, i, k_end - 1)
    local v_end = value_end(s, k_end + 1)  -- past the ':'
    if values[key] == nil then order[#order + 1] = key end
    values[key] = string.sub(s, k_end + 1, v_end - 1)
    if string.sub(s, v_end, v_end) == '}' then return end
    i = v_end + 1
  end
end
local h, f = load_via(ARGV[4])
if not live(f) then return false end
local order, values = {}, {}
if f.x then
  if string.sub(f.x, 1, 1) ~= '{' then return -1 end
  members(f.x, order, values)
end
members(changes, order, values)
local parts = {}
for i, key in ipairs(order) do parts[i] = key .. ':' .. values[key] end
local data = '{' .. table.concat(parts, ',') .. '}'
redis.call('HSET', skey(h), 'x', data)
return data
