local M = ORDER_SPACE
local n = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local after_band = tonumber(ARGV[3])
local after_key = tonumber(ARGV[4])
local want_g = ARGV[5]
local viewer = ARGV[6]
local k = tonumber(ARGV[7])
local skip = {}
for j = 1, k do skip[ARGV[7 + j]] = true end
local base = 7 + k
local factor, g = 1.5, nil
if want_g ~= '' then factor, g = 3, string.byte(want_g) end
local now_sec = math.floor(now / 1000)
local vlen = 8 + #viewer
local function admit(m, list)
  if (g == nil or string.byte(m) == g) and tonumber(string.sub(m, 2, 8), 36) > now_sec
      and not (#m == vlen and string.sub(m, 9) == viewer)
      and (k == 0 or not skip[string.sub(m, 9)]) then
    list[#list + 1] = m
  end
end
local examined, budget = 0, 20 * n + 2000
local function range(key, lo, hi, list)
  local got = redis.call('ZRANGEBYSCORE', key, lo, hi)
  examined = examined + #got
  for _, m in ipairs(got) do
    admit(m, list)
  end
end
local function read(key, parts, list)
  for _, part in ipairs(parts) do range(key, part[1], part[2], list) end
end
local out = {now, -1, 0}
local count = 0
local i = 1
local prev_band = nil
while i <= #KEYS and count < n and out[2] == -1 do
  local band = tonumber(ARGV[base + i])
  if examined >= budget and prev_band ~= nil then
    -- Out of budget between bands: everything up to the end of the previous band is read.
    out[2], out[3] = prev_band, M
    break
  end
  local j, total = i, 0
  while j <= #KEYS and tonumber(ARGV[base + j]) == band do
    total = total + redis.call('ZCARD', KEYS[j])
    j = j + 1
  end
  local lo = 0
  if band == after_band then lo = after_key + 1 end
  local lists = {}
  for c = i, j - 1 do lists[c] = {} end
  if total > 0 and lo < M then
    local need = n - count
    local width = math.ceil(M * math.min(1, (factor * need + 8) / total))
    local from, got = lo, 0
    while true do
      local to = math.min(from + width, M)
      local parts = bounds(offset, from, to)
      for c = i, j - 1 do
        local before = #lists[c]
        read(KEYS[c], parts, lists[c])
        got = got + #lists[c] - before
      end
      if got >= need or to >= M then break end
      if examined >= budget then
        out[2], out[3] = band, to
        break
      end
      from, width = to, width * 2
    end
    count = count + got
  end
  for c = i, j - 1 do
    if #lists[c] > 0 then
      out[#out + 1] = c
      out[#out + 1] = table.concat(lists[c], '\n')
    end
  end
  prev_band = band
  i = j
end
return out
