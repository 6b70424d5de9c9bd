local function drop_user(key, ticket, user)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, ticket, ticket)) do
    if string.sub(m, 9) == user then redis.call('ZREM', key, m) end
  end
end
local function drop_if_empty(key, due, cell_id)
  if redis.call('ZCARD', key) == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', due, cell_id)
    if redis.call('ZCARD', due) == 0 then redis.call('DEL', due) end
  end
end
local function add_member(key, due, g, user, ticket, purge, cell_id)
  drop_user(key, ticket, user)
  redis.call('ZADD', key, ticket, member(g, purge, user))
  redis.call('ZADD', due, 'LT', num(purge), cell_id)
  expire_at(key, purge)
  expire_at_shared(due, purge)
end
