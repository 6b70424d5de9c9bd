local cut = math.floor(now / 1000) * 1000
local budget = tonumber(ARGV[3])
local read, due, examined = {}, {}, 0
local cells = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(cut), 'LIMIT', 0, tonumber(ARGV[2]))
for _, c in ipairs(cells) do
  if examined >= budget then break end
  local members = redis.call('ZRANGE', ARGV[1] .. c, 0, -1)
  examined = examined + #members
  read[#read + 1] = c
  for _, m in ipairs(members) do
    if deadline_ms(m) <= cut then due[#due + 1] = m end
  end
end
return {cut, read, due}
