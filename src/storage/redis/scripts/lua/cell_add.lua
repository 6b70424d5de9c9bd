local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
-- Held only provisionally until the last step confirms it (CELL_CONFIRM): a node that dies
-- before leaves a member that stops counting after ARGV[6] ms, not after the retention.
local held = math.min(purge, math.ceil((now + tonumber(ARGV[6])) / 1000) * 1000)
add_member(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], held, ARGV[5])
return {purge - retention, purge}
