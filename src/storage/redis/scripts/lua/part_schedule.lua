redis.call('ZADD', KEYS[1], 'LT', ARGV[1], ARGV[2])
expire_at(KEYS[1], tonumber(ARGV[3]))
return 1
