-- One call counted against the rate under KEYS[1], or refused changing nothing. With KEYS[2]
-- (a user hash, single node only) and ARGV[3] (a field), an admitted call also reads that
-- record, so the jump cap costs no second round trip.
local now_us = clock_us()
local next_tat, wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now_us)
if not next_tat then return {0, wait, false} end
gcra_keep(KEYS[1], next_tat, now_us)
local record = false
if KEYS[2] then record = redis.call('HGET', KEYS[2], ARGV[3]) end
return {1, math.floor(now_us / 1000), record}
