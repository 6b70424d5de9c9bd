-- Marks that clears leave (the key table in keys.rs): a user shard's clear mark
-- (`storage::Fence`), which every People Nearby clear sets, and a user's Shake tombstone. Each
-- clear sets a larger mark than the last (the store's time in ms, or one more within the same
-- millisecond), kept for `ttl_ms`. A write admitted under a fence (the mark it read, and when)
-- lands only while the mark is still that one and the fence is younger than FENCE_LIFETIME_MS.
local function set_mark(key, ttl_ms)
  local last = tonumber(redis.call('GET', key) or '0')
  redis.call('SET', key, num(math.max(now, last + 1)), 'PX', ttl_ms)
end

local function fence_holds(key, mark, read_at)
  return (redis.call('GET', key) or '0') == mark and now - tonumber(read_at) <= FENCE_LIFETIME_MS
end
