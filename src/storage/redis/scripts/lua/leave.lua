local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec or not is_record(rec) or tonumber(string.sub(rec, 1, 13)) <= now then
  return nil
end
local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
local key, due, id = record_cell(rec, tonumber(ARGV[5]))
drop_record_member(key, rec, ARGV[2])
add_member(key, due, record_gender(rec), ARGV[2], ARGV[3], purge, id)
redis.call('HSET', KEYS[1], ARGV[1], left_record(rec, purge, retention))
expire_at(KEYS[1], purge)
local part = string.match(key, '{(.-)}')
redis.call('ZADD', KEYS[2], 'LT', num(purge), part)
expire_at_shared(KEYS[2], purge + retention)
return {purge - retention, purge}
