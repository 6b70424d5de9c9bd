-- One call counted against the rate under KEYS[1] and a place taken under each of KEYS[2..],
-- all or nothing: a refusal (by the rate or by any full place) changes nothing but dropping
-- places already ended.
local token, hold = ARGV[3], tonumber(ARGV[4])
local now_us = clock_us()
local now_ms = math.floor(now_us / 1000)
local next_tat, wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now_us)
if not next_tat then return {0, 0, wait} end
for i = 2, #KEYS do
  local full = place_wait(KEYS[i], tonumber(ARGV[3 + i]), now_ms)
  if full then return {0, i - 1, full} end
end
gcra_keep(KEYS[1], next_tat, now_us)
for i = 2, #KEYS do place_take(KEYS[i], token, now_ms + hold) end
return {1, 0, now_ms}
