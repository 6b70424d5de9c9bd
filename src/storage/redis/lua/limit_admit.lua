-- GCRA: KEYS[1] holds the theoretical arrival time (ms) of the next call; a call is
-- admitted when that time, one interval on, runs at most `tolerance` ahead of now.
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > tolerance then
  return {0, next_tat - now - tolerance}
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', string.format('%d', next_tat - now))
return {1, now}
