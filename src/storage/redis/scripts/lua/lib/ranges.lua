-- The score ranges of rotated keys [a, b) (ticket = key + offset mod ORDER_SPACE): one, or two
-- around the rotation, as the text ZRANGEBYSCORE takes. Formatting a number costs about as much
-- as reading an empty cell, so a window's pass formats its ranges once for all its cells.
local function bounds(offset, a, b)
  local M = ORDER_SPACE
  local s, e = offset + a, offset + b
  if s >= M then return {{num(s - M), '(' .. num(e - M)}} end
  if e <= M then return {{num(s), '(' .. num(e)}} end
  return {{num(s), '(' .. num(M)}, {'0', '(' .. num(e - M)}}
end
