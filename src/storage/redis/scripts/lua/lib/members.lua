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
local function num(x)
  return string.format('%.0f', x)
end
