local M = 4503599627370496
local n = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local after_band = tonumber(ARGV[3])
local after_key = tonumber(ARGV[4])
local k = tonumber(ARGV[7])
local base = 7 + k
-- Raw members wanted: the page, the viewer and the excluded (the caller drops them), three
-- times the page under a gender filter. Members are passed through untouched: the caller
-- filters (gender, viewer, block list, deadline) and ranks.
local want = n + 1 + k
if ARGV[5] ~= '' then want = 3 * n + 1 + k end
local examined, budget = 0, 20 * n + 2000
-- Up to `cap` members of `key` from rotated key `lo` on, in order (ticket = lo + offset mod M):
-- their text and whether the cap cut the read (more may follow).
local function read(key, lo, cap)
  if lo == 0 then
    -- A cell read from the start of its band: a sparse one is read whole in one call.
    local all = redis.call('ZRANGE', key, 0, cap - 1)
    if #all < cap then
      examined = examined + #all
      return table.concat(all, '\n'), #all, false
    end
  end
  local s = offset + lo
  local got, more
  if s >= M then
    got = redis.call('ZRANGEBYSCORE', key, num(s - M), '(' .. num(offset), 'LIMIT', 0, cap)
  else
    got = redis.call('ZRANGEBYSCORE', key, num(s), '(' .. num(M), 'LIMIT', 0, cap)
    if #got < cap and offset > 0 then
      more = redis.call('ZRANGEBYSCORE', key, 0, '(' .. num(offset), 'LIMIT', 0, cap - #got)
    end
  end
  local text, count = table.concat(got, '\n'), #got
  local last = got[#got]
  if more and #more > 0 then
    if count > 0 then text = text .. '\n' end
    text, count, last = text .. table.concat(more, '\n'), count + #more, more[#more]
  end
  examined = examined + count
  if count < cap then return text, count, false end
  -- Cut: the cell is complete up to its last member's rotated key.
  local r = tonumber(redis.call('ZSCORE', key, last)) - offset
  if r < 0 then r = r + M end
  return text, count, r + 1
end
local out = {now, -1, 0}
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
  local cap, hi = want - count, M
  local j = i
  while j <= #KEYS and tonumber(ARGV[base + j]) == band do
    if lo < M then
      local text, got, cut = read(KEYS[j], lo, cap)
      if got > 0 then
        out[#out + 1] = j
        out[#out + 1] = text
      end
      count = count + got
      if cut and cut < hi then hi = cut end
    end
    j = j + 1
  end
  if hi < M then
    -- A cell was cut: the band is complete below `hi` and holds at least `cap` there.
    out[2], out[3] = band, hi
    break
  end
  prev_band = band
  i = j
end
if out[2] == -1 and i <= #KEYS then
  -- Enough read before the last bands: the page ends with the last band read whole at most.
  out[2], out[3] = prev_band, M
end
return out
