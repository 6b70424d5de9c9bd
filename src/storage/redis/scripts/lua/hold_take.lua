-- One of `cap` places under KEYS[1] for a token, unless all are held (ended ones go first).
local token, cap, hold = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = place_wait(KEYS[1], cap, now)
if wait then return {0, wait} end
place_take(KEYS[1], token, now + hold)
return {1, now}
