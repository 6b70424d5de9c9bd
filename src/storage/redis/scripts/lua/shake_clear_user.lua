local user, clear = ARGV[1], ARGV[2] == '1'
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'u:' .. user)) do
  if unpend(id) then n = n + 1 end
  if clear and forget_box(id) then n = n + 1 end
end
if clear then
  redis.call('DEL', P .. 'u:' .. user)
  local mine = redis.call('ZRANGE', P .. 'h:' .. user, 0, -1)
  n = n + #mine
  for _, e in ipairs(mine) do redis.call('ZREM', P .. 'n:' .. entry_partner(e), user) end
  redis.call('DEL', P .. 'h:' .. user)
  for _, other in ipairs(redis.call('ZRANGE', P .. 'n:' .. user, 0, -1)) do
    local key = P .. 'h:' .. other
    for _, e in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if entry_partner(e) == user then redis.call('ZREM', key, e) end
    end
  end
  redis.call('DEL', P .. 'n:' .. user)
  redis.call('ZREM', P .. 'hdue', user)
  -- The mark a Shake compares: larger than the last even within one millisecond.
  set_mark(P .. 'x:' .. ARGV[4], tonumber(ARGV[3]))
  return {n, 0}
end
local last = redis.call('ZRANGE', P .. 'h:' .. user, -1, -1, 'WITHSCORES')
return {n, last[2] or 0}
