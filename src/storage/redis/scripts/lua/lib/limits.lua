-- Limit state, shared by the limit scripts. Rates are GCRA: a key holds the theoretical
-- arrival time (µs) of the next call. Places are a ZSET of token by end (ms).

-- The server's clock in µs (exact as a double until the year 2255): the instant of the
-- script's one `TIME` (lib/now.lua), so `now` and this agree and a call pays for one.
local function clock_us()
  return tonumber(time_now[1]) * 1000000 + tonumber(time_now[2])
end

-- The rate under `key` for one more call at `now_us`: the arrival time to keep when it is
-- admitted, else nil and the wait (ms). Changes nothing.
local function gcra(key, interval, tolerance, now_us)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now_us then tat = now_us end
  local next_tat = tat + interval
  if next_tat - now_us > tolerance then
    return nil, math.ceil((next_tat - now_us - tolerance) / 1000)
  end
  return next_tat
end

-- Keeps an admitted call's arrival time, until it is void.
local function gcra_keep(key, next_tat, now_us)
  redis.call('SET', key, num(next_tat), 'PX', num(math.ceil((next_tat - now_us) / 1000)))
end

-- Drops the places under `key` ended at `now_ms`; the wait (ms) until the first one ends when
-- `cap` are still held, else nil.
local function place_wait(key, cap, now_ms)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now_ms))
  if redis.call('ZCARD', key) < cap then return nil end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tonumber(first[2]) - now_ms
end

-- Takes a place for `token` until `until_ms`; the key lives as long as its last place.
local function place_take(key, token, until_ms)
  redis.call('ZADD', key, num(until_ms), token)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, num(tonumber(last[2])))
end
