local cut = math.floor(now / 1000) * 1000
local all = redis.call('HGETALL', KEYS[1])
local n, earliest = 0, -1
for i = 1, #all, 2 do
  local rec = all[i + 1]
  local purge = tonumber(string.sub(rec, 1, 13))
  if (is_record(rec) or is_strays(rec)) and purge then
    if math.floor(purge / 1000) * 1000 <= cut then
      redis.call('HDEL', KEYS[1], all[i])
      if is_record(rec) then n = n + 1 end
    elseif earliest == -1 or purge < earliest then
      earliest = purge
    end
  end
end
return {n, cut, earliest}
