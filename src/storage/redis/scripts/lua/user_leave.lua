local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec or not is_record(rec) or string.sub(rec, 14, 21) ~= ARGV[2] then
  return 0
end
local purge = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], left_record(rec, purge, tonumber(ARGV[4])))
expire_at(KEYS[1], purge)
return 1
