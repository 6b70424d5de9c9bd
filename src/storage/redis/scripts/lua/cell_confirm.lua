local found = false
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[3])) do
  if string.sub(m, 9) == ARGV[2] then found = true end
end
if not found then return 0 end
add_member(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5])
return 1
