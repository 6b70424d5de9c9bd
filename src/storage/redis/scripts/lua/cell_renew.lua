local found = redis.call('ZREM', KEYS[1], ARGV[6]) == 1
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[3])) do
  if string.sub(m, 9) == ARGV[2] then found = true end
end
if not found then return nil end
local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
add_member(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], purge, ARGV[5])
return {purge - retention, purge}
