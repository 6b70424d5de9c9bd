local out = {now}
for _, e in ipairs(redis.call('ZRANGEBYSCORE', P .. 'h:' .. ARGV[1], '(' .. now_s, '+inf')) do
  out[#out + 1] = e
end
return out
