redis.call('ZADD', KEYS[1], now_s, ARGV[1])
return 1
