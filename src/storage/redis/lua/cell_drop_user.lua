drop_user(KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[4])
drop_if_empty(KEYS[1], KEYS[2], ARGV[3])
return 1
