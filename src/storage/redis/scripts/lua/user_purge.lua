local cut = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local rec = redis.call('HGET', KEYS[1], ARGV[i])
  if rec then
    local purge = tonumber(string.sub(rec, 1, 13))
    if purge and math.floor(purge / 1000) * 1000 <= cut then
      redis.call('HDEL', KEYS[1], ARGV[i])
      if is_record(rec) then n = n + 1 end
    end
  end
end
return n
