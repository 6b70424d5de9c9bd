redis.call('ZADD', KEYS[1], 'LT', ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[4])
expire_at(KEYS[1], tonumber(ARGV[5]))
expire_at(KEYS[2], tonumber(ARGV[5]))
return 1
