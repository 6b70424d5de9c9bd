local time_now = redis.call('TIME')
local now = tonumber(time_now[1]) * 1000 + math.floor(tonumber(time_now[2]) / 1000)
-- `now` (milliseconds) as text, for commands' arguments: not seconds.
local now_s = num(now)
