local B36 = '0123456789abcdefghijklmnopqrstuvwxyz'
local function member(g, purge_ms, user)
  local n = math.floor(purge_ms / 1000)
  local s = ''
  for _ = 1, 7 do
    local r = n % 36
    s = string.sub(B36, r + 1, r + 1) .. s
    n = math.floor(n / 36)
  end
  return g .. s .. user
end
local function deadline_ms(m)
  return tonumber(string.sub(m, 2, 8), 36) * 1000
end
-- A whole number (every score, deadline and bound the scripts pass is one, below 2^53) as the
-- text a command takes. `%d`, never `%.0f` or a number handed to `redis.call` as it is: those
-- print through the C library's floating-point formatter, about a microsecond each for a
-- 13-digit millisecond time, a tenth of an update's Redis time when every call paid it
-- (docs/performance.md, round 15).
local function num(x)
  return string.format('%d', x)
end
