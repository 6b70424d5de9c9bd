-- Cleared since the call read its mark (before its consent check): a withdrawal may have
-- answered OK, so nothing is paired or left pending.
if (redis.call('GET', P .. 'x:' .. ARGV[11]) or '0') ~= ARGV[12] then return {2} end
local function parse(rec)
  local u, c, lat, lng, arrived, expires, node, coarse =
    string.match(rec, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return {user = u, cell = c, lat = tonumber(lat), lng = tonumber(lng), arrived = tonumber(arrived),
          expires = tonumber(expires), node = node, coarse = coarse}
end
local function dist2(lat1, lng1, lat2, lng2)
  local x = math.rad(lng2 - lng1) * math.cos(math.rad((lat1 + lat2) / 2))
  local y = math.rad(lat2 - lat1)
  return x * x + y * y
end
local lat, lng = tonumber(ARGV[4]), tonumber(ARGV[5])
local best, best_id, best_d, found_ring = nil, nil, nil, nil
local function consider(id)
  local rec = redis.call('HGET', P .. 'p', id)
  if not rec then return end
  local p = parse(rec)
  if p.user == ARGV[2] or p.expires <= now then return end
  local d = dist2(lat, lng, p.lat, p.lng)
  if best == nil or d < best_d or (d == best_d and p.arrived < best.arrived) then
    best, best_id, best_d = p, id, d
  end
end
local per_cell, far_pool = tonumber(ARGV[9]), tonumber(ARGV[10])
for ring = 0, #ARGV - 13 do
  if found_ring ~= nil and ring > found_ring + 1 then break end
  for coarse in string.gmatch(ARGV[13 + ring], '[^|]+') do
    for _, id in ipairs(redis.call('ZRANGE', P .. 'c:' .. coarse, 0, per_cell - 1)) do consider(id) end
  end
  if best ~= nil and found_ring == nil then found_ring = ring end
end
if best == nil then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'all', '(' .. now_s, '+inf', 'LIMIT', 0, far_pool)) do
    consider(id)
    if best ~= nil then break end
  end
end
if best ~= nil then
  unpend(best_id)
  local box = P .. 'm:' .. best_id
  redis.call('RPUSH', box, ARGV[2] .. '|' .. ARGV[3] .. '|' .. now_s .. '|' .. best.user)
  expire_at(box, best.expires + UNCOLLECTED_MS)
  redis.call('ZADD', P .. 'mdue', num(best.expires + UNCOLLECTED_MS), best_id)
  expire_at(P .. 'u:' .. best.user, best.expires + UNCOLLECTED_MS)
  -- The mailbox names the arriving user too: a Clear of theirs must find it.
  redis.call('SADD', P .. 'u:' .. ARGV[2], best_id)
  expire_at(P .. 'u:' .. ARGV[2], best.expires + UNCOLLECTED_MS)
  redis.call('PUBLISH', WAKE_PREFIX .. best.node, best_id)
  return {1, best.user, best.cell, now}
end
local expires = now + tonumber(ARGV[6])
local rec = table.concat({ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_s, num(expires), ARGV[7], ARGV[8]}, '|')
redis.call('HSET', P .. 'p', ARGV[1], rec)
redis.call('ZADD', P .. 'c:' .. ARGV[8], now_s, ARGV[1])
redis.call('ZADD', P .. 'all', num(expires), ARGV[1])
redis.call('SADD', P .. 'u:' .. ARGV[2], ARGV[1])
for _, k in ipairs({P .. 'p', P .. 'c:' .. ARGV[8], P .. 'all', P .. 'u:' .. ARGV[2]}) do
  expire_at(k, expires)
end
return {0, now, expires}
