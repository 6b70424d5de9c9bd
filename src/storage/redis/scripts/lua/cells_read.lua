local M = ORDER_SPACE
local n = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local after_band = tonumber(ARGV[3])
local after_key = tonumber(ARGV[4])
local k = tonumber(ARGV[7])
local base = 7 + k
-- Raw members wanted: the page, the viewer and the excluded (the caller drops them). Members
-- are passed through untouched: the caller filters (viewer, block list, deadline) and ranks.
local want = n + 1 + k
local examined, budget = 0, 20 * n + 2000
local out = {now, -1, 0}
local function keep(j, got)
  if #got > 0 then
    out[#out + 1] = j
    out[#out + 1] = table.concat(got, '\n')
  end
  examined = examined + #got
  return #got
end
-- The members of `key` in the ranges `parts` ([`bounds`]), at most `cap` of them in order
-- (cap nil: all).
local function range(key, parts, cap)
  local function zr(part, c)
    if c then
      return redis.call('ZRANGEBYSCORE', key, part[1], part[2], 'LIMIT', 0, c)
    end
    return redis.call('ZRANGEBYSCORE', key, part[1], part[2])
  end
  local got = zr(parts[1], cap)
  if parts[2] == nil or (cap and #got >= cap) then return got end
  local more = zr(parts[2], cap and cap - #got)
  for _, m in ipairs(more) do got[#got + 1] = m end
  return got
end
-- The rotated key just after member `m` of `key`.
local function after(key, m)
  local r = tonumber(redis.call('ZSCORE', key, m)) - offset
  if r < 0 then r = r + M end
  return r + 1
end
local count = 0
local i = 1
local prev_band = nil
while i <= #KEYS and count < want do
  local band = tonumber(ARGV[base + i])
  if examined >= budget and prev_band ~= nil then
    -- Out of budget between bands: everything up to the end of the previous band is read.
    out[2], out[3] = prev_band, M
    break
  end
  local lo = 0
  if band == after_band then lo = after_key + 1 end
  local j = i
  while j <= #KEYS and tonumber(ARGV[base + j]) == band do j = j + 1 end
  local need = want - count
  if lo < M and j == i + 1 then
    -- One cell: at most what is still wanted, in order (a sparse cell whole in one call).
    local got
    if lo == 0 then
      got = redis.call('ZRANGE', KEYS[i], 0, need - 1)
      if #got >= need then got = nil end
    end
    got = got or range(KEYS[i], bounds(offset, lo, M), need)
    count = count + keep(i, got)
    if #got >= need then
      out[2], out[3] = band, after(KEYS[i], got[#got])
      break
    end
  elseif lo < M then
    -- Several cells: one window of the key space, sized from their total to hold a little more
    -- than what is still wanted, widened (doubling) only when it falls short.
    local total = 0
    for c = i, j - 1 do total = total + redis.call('ZCARD', KEYS[c]) end
    if lo == 0 and total <= need then
      -- Sparse: every cell whole, one call each.
      for c = i, j - 1 do count = count + keep(c, redis.call('ZRANGE', KEYS[c], 0, -1)) end
      total = -1
    end
    local width = M
    if total > need then width = math.ceil(M * math.min(1, (1.25 * need + 4) / total)) end
    local from, got_band = lo, 0
    while total >= 0 do
      local to = math.min(from + width, M)
      local parts = bounds(offset, from, to)
      for c = i, j - 1 do got_band = got_band + keep(c, range(KEYS[c], parts)) end
      if got_band >= need or to >= M then
        if to < M then out[2], out[3] = band, to end
        break
      end
      if examined >= budget then
        out[2], out[3] = band, to
        break
      end
      from, width = to, width * 2
    end
    count = count + got_band
    if out[2] ~= -1 then break end
  end
  prev_band = band
  i = j
end
if out[2] == -1 and i <= #KEYS then
  -- Enough read before the last bands: the page ends with the last band read whole at most.
  out[2], out[3] = prev_band, M
end
return out
