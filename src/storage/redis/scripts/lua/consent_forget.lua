local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', unpack(KEYS))
return n
