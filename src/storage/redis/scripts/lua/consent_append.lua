if ARGV[2] == '1' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
local mine, oldest = 0, nil
local of_feature = '^[^\31]*\31' .. ARGV[3] .. '\31'
for _, e in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if string.find(e, of_feature) then
    mine = mine + 1
    if oldest == nil then oldest = e end
  end
end
if mine > tonumber(ARGV[4]) then redis.call('LREM', KEYS[2], 1, oldest) end
return 1
