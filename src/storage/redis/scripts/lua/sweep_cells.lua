local cut = tonumber(ARGV[2])
for i = 3, #ARGV do
  local c = ARGV[i]
  local key = ARGV[1] .. c
  local earliest = nil
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local d = deadline_ms(m)
    if d <= cut then
      redis.call('ZREM', key, m)
    elseif earliest == nil or d < earliest then
      earliest = d
    end
  end
  if earliest == nil then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], c)
  else
    redis.call('ZADD', KEYS[1], num(earliest), c)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('DEL', KEYS[1])
  return nil
end
return first[2]
