-- GCRA: KEYS[1] holds the theoretical arrival time (µs) of the next call; a call is
-- admitted when that time, one interval on, runs at most `tolerance` ahead of now. With
-- KEYS[2] (a user hash, single node only) and ARGV[3] (a field), an admitted call also reads
-- that record, so the jump cap costs no second round trip.
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now_us then tat = now_us end
local next_tat = tat + interval
if next_tat - now_us > tolerance then
  return {0, math.ceil((next_tat - now_us - tolerance) / 1000), false}
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
  string.format('%d', math.ceil((next_tat - now_us) / 1000)))
local record = false
if KEYS[2] then record = redis.call('HGET', KEYS[2], ARGV[3]) end
return {1, math.floor(now_us / 1000), record}
