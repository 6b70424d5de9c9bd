drop_user(KEYS[1], ARGV[2], ARGV[1])
if #ARGV >= 4 then redis.call('ZREM', KEYS[1], unpack(ARGV, 4)) end
drop_if_empty(KEYS[1], KEYS[2], ARGV[3])
return 1
