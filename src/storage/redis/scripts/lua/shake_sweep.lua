local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'all', '-inf', now_s, 'LIMIT', 0, SHAKE_SWEEP_BATCH)) do
  local user = unpend(id)
  if user then redis.call('SREM', P .. 'u:' .. user, id) end
  redis.call('ZREM', P .. 'all', id)
  n = n + 1
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'mdue', '-inf', now_s, 'LIMIT', 0, SHAKE_SWEEP_BATCH)) do
  forget_box(id)
  redis.call('ZREM', P .. 'mdue', id)
  n = n + 1
end
local due = redis.call('ZRANGEBYSCORE', P .. 'hdue', '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[1]))
for _, user in ipairs(due) do
  local h, x = P .. 'h:' .. user, P .. 'n:' .. user
  n = n + redis.call('ZREMRANGEBYSCORE', h, '-inf', now_s)
  redis.call('ZREMRANGEBYSCORE', x, '-inf', now_s)
  local next = nil
  for _, k in ipairs({h, x}) do
    local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
    if #first > 0 and (next == nil or tonumber(first[2]) < next) then next = tonumber(first[2]) end
  end
  if next == nil then
    redis.call('DEL', h, x)
    redis.call('ZREM', P .. 'hdue', user)
  else
    redis.call('ZADD', P .. 'hdue', num(next), user)
  end
end
-- What is still due in any of the three (a backlog after a stall): the caller calls again.
local left = 0
-- The schedules, as one string (a constant, not a table made at every script call).
for k in string.gmatch(SHAKE_SCHEDULES, '%S+') do
  left = left + redis.call('ZCOUNT', P .. k, '-inf', now_s)
end
return {n, left}
