local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
add_member(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], purge, ARGV[5])
return {purge - retention, purge}
