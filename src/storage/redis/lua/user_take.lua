if KEYS[2] then set_clear_mark(KEYS[2]) end
local rec = redis.call('HGET', KEYS[1], ARGV[1])
local strays = redis.call('HGET', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[2])
return {rec, strays}
