local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
local user, ticket = ARGV[2], ARGV[3]
local old = redis.call('HGET', KEYS[3], ARGV[6])
if old and is_record(old) then
  local key, due, id = record_cell(old, tonumber(ARGV[9]))
  drop_record_member(key, old, user)
  if id ~= ARGV[5] then
    -- Moved: the old cell loses every member of the user (add_member below drops them from
    -- the new one).
    drop_user(key, ticket, user)
    drop_if_empty(key, due, id)
  end
end
add_member(KEYS[1], KEYS[2], ARGV[1], user, ticket, purge, ARGV[5])
redis.call('HSET', KEYS[3], ARGV[6], string.format('%013.0f', purge) .. ARGV[7])
expire_at(KEYS[3], purge)
redis.call('ZADD', KEYS[4], 'LT', num(purge), ARGV[8])
expire_at(KEYS[4], purge + retention)
return {purge - retention, purge}
