-- A user's strays (cluster only): the cells where a member of theirs may be left that their
-- record does not name (an update in flight or cut off between its steps), as one hash field
-- beside the record: a 13-digit deadline (ms; every member named lives no longer), then the
-- cells, 8 raw bytes each. A Clear drops the user's members in all of them.
local function is_strays(v)
  return #v > 13 and (#v - 13) % 8 == 0
end
local function strays_cells(v)
  local cells = {}
  if v then
    for i = 14, #v, 8 do cells[#cells + 1] = string.sub(v, i, i + 7) end
  end
  return cells
end
local function strays_deadline(v)
  if v then return tonumber(string.sub(v, 1, 13)) end
  return 0
end
local function strays_put(key, field, cells, deadline)
  if #cells == 0 then
    redis.call('HDEL', key, field)
    return
  end
  redis.call('HSET', key, field, string.format('%013d', deadline) .. table.concat(cells))
  expire_at(key, deadline)
end
-- Adds `cell` (unless listed) and lifts the deadline to `deadline`; refuses (false) when that
-- would leave fewer than `room` free places below STRAYS_CAP.
local function strays_add(key, field, cell, deadline, room)
  local v = redis.call('HGET', key, field)
  local cells = strays_cells(v)
  local listed = false
  for _, c in ipairs(cells) do
    if c == cell then listed = true end
  end
  if not listed then
    if #cells + room > STRAYS_CAP then return false end
    cells[#cells + 1] = cell
  end
  strays_put(key, field, cells, math.max(strays_deadline(v), deadline))
  return true
end
