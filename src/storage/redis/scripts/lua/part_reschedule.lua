redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
expire_at(KEYS[1], tonumber(ARGV[3]))
return 1
