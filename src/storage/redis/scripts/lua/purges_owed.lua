return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(now - tonumber(ARGV[1])), 'LIMIT', 0,
  tonumber(ARGV[2]))
