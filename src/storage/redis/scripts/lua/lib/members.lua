-- The last base-36 digit of whole number `n` (its character code: '0'-'9', then 'a'-'z') and
-- the rest of `n`, both exact: no `math.floor`, no string but the member's own.
local function b36(n)
  local r = n % 36
  return r + (r < 10 and 48 or 87), (n - r) / 36
end
local function member(g, purge_ms, user)
  local n = (purge_ms - purge_ms % 1000) / 1000
  local d7, d6, d5, d4, d3, d2, d1
  d7, n = b36(n)
  d6, n = b36(n)
  d5, n = b36(n)
  d4, n = b36(n)
  d3, n = b36(n)
  d2, n = b36(n)
  d1 = b36(n)
  return g .. string.char(d1, d2, d3, d4, d5, d6, d7) .. user
end
local function deadline_ms(m)
  return tonumber(string.sub(m, 2, 8), 36) * 1000
end
