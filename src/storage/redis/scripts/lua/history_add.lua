local user, partner, at = ARGV[1], ARGV[2], tonumber(ARGV[3])
if cleared_since(ARGV[7], at) or cleared_since(ARGV[8], at) then return 0 end
local deadline = tonumber(ARGV[5])
local h, x = P .. 'h:' .. user, P .. 'n:' .. partner
redis.call('ZADD', h, ARGV[5], ARGV[4])
local over = redis.call('ZCARD', h) - tonumber(ARGV[6])
if over > 0 then redis.call('ZREMRANGEBYRANK', h, 0, over - 1) end
redis.call('ZADD', x, 'GT', ARGV[5], user)
redis.call('ZADD', P .. 'hdue', 'LT', ARGV[5], user)
redis.call('ZADD', P .. 'hdue', 'LT', ARGV[5], partner)
expire_at(h, deadline)
expire_at(x, deadline)
expire_at(P .. 'hdue', deadline)
return 1
