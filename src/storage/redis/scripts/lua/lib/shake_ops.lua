local P = SHAKE_PREFIX
local function unpend(id)
  local rec = redis.call('HGET', P .. 'p', id)
  if not rec then return false end
  local user, coarse = string.match(rec, '^([^|]*)|'), string.match(rec, '|([^|]*)$')
  redis.call('HDEL', P .. 'p', id)
  redis.call('ZREM', P .. 'c:' .. coarse, id)
  redis.call('ZREM', P .. 'all', id)
  return user
end
local function entry_partner(e)
  return string.match(e, '^([^|]*)|')
end
local function forget_box(id)
  local pair = redis.call('LPOP', P .. 'm:' .. id)
  if pair then
    redis.call('DEL', P .. 'm:' .. id)
    redis.call('ZREM', P .. 'mdue', id)
    local partner, owner = string.match(pair, '^([^|]*)|'), string.match(pair, '|([^|]*)$')
    redis.call('SREM', P .. 'u:' .. partner, id)
    redis.call('SREM', P .. 'u:' .. owner, id)
  end
  return pair
end
local function cleared_since(tomb, at)
  local t = redis.call('GET', P .. 'x:' .. tomb)
  return t ~= false and tonumber(t) >= at
end
