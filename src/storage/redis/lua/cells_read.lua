local M = 4503599627370496
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
-- Members per cell over the whole key space, from what this call has read (cells read whole,
-- windows' shares of it); seeded with one ZCARD when nothing was read yet. It only sizes
-- windows: a wrong guess costs a wider read or one more pass, never a member.
local seen, share = 0, 0
local function observe(got, fraction)
  seen, share = seen + got, share + fraction
end
local function density(key)
  if share == 0 then observe(redis.call('ZCARD', key), 1) end
  return seen / share
end
-- The score ranges of rotated keys [a, b) (ticket = key + offset mod M): one, or two around
-- the rotation, as the text ZRANGEBYSCORE takes. Formatting a number costs about as much as
-- the read of an empty cell, so a pass formats its ranges once for all its cells.
local function bounds(a, b)
  local s, e = offset + a, offset + b
  if s >= M then return {{num(s - M), '(' .. num(e - M)}} end
  if e <= M then return {{num(s), '(' .. num(e)}} end
  return {{num(s), '(' .. num(M)}, {'0', '(' .. num(e - M)}}
end
-- The members of `key` in the ranges `parts` ([`bounds`]), at most `cap` of them in order.
local function range(key, parts, cap)
  local one, two = parts[1], parts[2]
  local got = redis.call('ZRANGEBYSCORE', key, one[1], one[2], 'LIMIT', 0, cap)
  if two == nil or #got >= cap then return got end
  local more = redis.call('ZRANGEBYSCORE', key, two[1], two[2], 'LIMIT', 0, cap - #got)
  for _, m in ipairs(more) do got[#got + 1] = m end
  return got
end
-- The rotated key just after member `m` of `key`.
local function after(key, m)
  local r = tonumber(redis.call('ZSCORE', key, m)) - offset
  if r < 0 then r = r + M end
  return r + 1
end
-- The share of the key space a window over `cells` cells should cover to hold a quarter
-- more than `need` (1: all of it).
local function share_for(cells, need, key)
  local est = density(key) * cells
  if est <= 0 then return 1 end
  return math.min(1, (1.25 * need + 4) / est)
end
-- Whether a band of `cells` cells is read cell by cell whole: one cell that should hold
-- fewer than `need`, or cells a window would read whole anyway (an ordered read of a
-- whole cell is two calls: the key space wraps around at the rotation).
local function sparse(key, cells, need)
  if cells == 1 then return density(key) < need end
  return share_for(cells, need, key) >= 1
end
-- Reads the cells `open` (of one band) in [from, to), at most `cap` members from each, in
-- order. Returns how many were read and the key below which every cell is
-- complete: `to`, or less when a cell gave `cap` (just after its last member: that cell
-- alone then holds `cap` below it).
local function pass(open, from, to, cap)
  local got, upto, parts = 0, to, bounds(from, to)
  for _, c in ipairs(open) do
    local part = range(KEYS[c], parts, cap)
    got = got + keep(c, part)
    if #part >= cap then upto = math.min(upto, after(KEYS[c], part[#part])) end
  end
  if upto == to then observe(got, #open * (to - from) / M) end
  return got, upto
end
-- Reads the cells `open` of one band from key `lo` until they hold `need` members: one
-- window of the key space sized from the density to hold a quarter more (the whole space
-- for one cell), doubling only when it falls short. Returns the key below which the band
-- is complete when it stopped before the end of the key space, else nil.
local function window(open, lo, need)
  local width = M
  if #open > 1 then width = math.ceil(M * share_for(#open, need, KEYS[open[1]])) end
  local from, got = lo, 0
  while true do
    local to = math.min(from + width, M)
    local g, upto = pass(open, from, to, need - got)
    got = got + g
    if upto < to then return got, upto end
    if got >= need or to >= M then
      if to < M then return got, to end
      return got, nil
    end
    if examined >= budget then return got, to end
    from, width = to, width * 2
  end
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
  local open = {}
  if lo == 0 and sparse(KEYS[i], j - i, need) then
    -- A sparse band: each cell whole in one call when it holds fewer than is still wanted
    -- (a crowd the density missed is left to the ordered read).
    for c = i, j - 1 do
      local got = redis.call('ZRANGE', KEYS[c], 0, need - 1)
      if #got < need then
        count = count + keep(c, got)
        observe(#got, 1)
      else
        examined = examined + #got
        open[#open + 1] = c
      end
    end
  elseif lo < M then
    for c = i, j - 1 do open[#open + 1] = c end
  end
  if #open > 0 then
    -- The cells not read whole, in order, until they alone hold what the band started
    -- wanting (so the page fills whatever the whole cells' members' keys).
    local got, stop = window(open, lo, need)
    count = count + got
    if stop then
      out[2], out[3] = band, stop
      break
    end
  end
  prev_band = band
  i = j
end
if out[2] == -1 and i <= #KEYS then
  -- Enough read before the last bands: the page ends with the last band read whole at most.
  out[2], out[3] = prev_band, M
end
return out
