-- A whole number (every score, deadline and bound the scripts pass is one, below 2^53) as the
-- text a command takes, formatted as an integer: a floating-point format, or a number handed
-- to `redis.call` as it is, prints through the C library's floating-point formatter, about a
-- microsecond each for a 13-digit millisecond time, a tenth of an update's Redis time when
-- every call paid it (docs/performance.md, round 15).
local function num(x)
  return string.format('%d', x)
end
