local function cell_hex(b8)
  local s = string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(b8, 1, 8))
  return (string.gsub(s, '^0+', ''))
end
local function parent_of(b8, r)
  local b = {string.byte(b8, 1, 8)}
  b[2] = r * 16 + b[2] % 16
  local k, i = (15 - r) * 3, 8
  while k >= 8 do
    b[i] = 255
    i, k = i - 1, k - 8
  end
  if k > 0 then
    local m = 2 ^ k
    b[i] = b[i] - b[i] % m + m - 1
  end
  return string.char(unpack(b))
end
