if KEYS[2] then set_mark(KEYS[2], CLEAR_MARK_TTL_MS) end
local rec = redis.call('HGET', KEYS[1], ARGV[1])
local strays = redis.call('HGET', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[2])
return {rec, strays}
