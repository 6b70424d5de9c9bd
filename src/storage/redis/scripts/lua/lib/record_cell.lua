local function record_cell(rec, res)
  local cell = string.sub(rec, 14, 21)
  local part = cell_hex(parent_of(cell, res))
  local id = cell_hex(cell)
  return CELL_KEY_HEAD .. part .. CELL_KEY_MID .. id, CELL_KEY_HEAD .. part .. DUE_KEY_TAIL, id
end
local function is_record(rec)
  return #rec == RECORD_LEN or #rec == LEGACY_RECORD_LEN
end
local function flags_of(rec)
  if #rec == LEGACY_RECORD_LEN then return string.byte(rec, 32) end
  return string.byte(rec, 22)
end
local function record_gender(rec)
  local g = flags_of(rec) % 4
  if g == 1 then return 'f' elseif g == 2 then return 'm' end
  return 'u'
end
local function drop_record_member(key, rec, user)
  redis.call('ZREM', key, member(record_gender(rec), tonumber(string.sub(rec, 1, 13)), user))
end
local function u32be(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end
local function left_record(rec, purge, retention)
  local flags = flags_of(rec)
  if flags % 8 < 4 then flags = flags + 4 end
  return string.format('%013d', purge) .. string.sub(rec, 14, 21) .. string.char(flags)
    .. u32be(retention)
end
