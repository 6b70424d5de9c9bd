if ARGV[2] == '1' then
  unpend(ARGV[1])
  redis.call('SREM', P .. 'u:' .. ARGV[3], ARGV[1])
end
return forget_box(ARGV[1])
