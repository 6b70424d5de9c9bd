-- One call counted against a rate (GCRA, KEYS[1]: the theoretical arrival time in µs) and a
-- place taken under each of KEYS[2..] (ZSETs of token by end, ms), all or nothing: a refusal
-- (by the rate or by any full place) changes nothing but dropping places already ended.
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local token, hold = ARGV[3], tonumber(ARGV[4])
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now_us / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now_us then tat = now_us end
local next_tat = tat + interval
if next_tat - now_us > tolerance then
  return {0, 0, math.ceil((next_tat - now_us - tolerance) / 1000)}
end
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
    local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {0, i - 1, tonumber(first[2]) - now_ms}
  end
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
  string.format('%d', math.ceil((next_tat - now_us) / 1000)))
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now_ms + hold, token)
  local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[i], string.format('%d', tonumber(last[2])))
end
return {1, 0, now_ms}
