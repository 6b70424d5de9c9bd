-- A user shard's clear mark (`storage::Fence`, the key table in keys.rs): every People Nearby
-- clear sets a larger one, and a write admitted under a fence (the mark it read, and when)
-- lands only while the mark is still that one and the fence is younger than FENCE_LIFETIME_MS.
local function set_clear_mark(key)
  local last = tonumber(redis.call('GET', key) or '0')
  redis.call('SET', key, string.format('%d', math.max(now, last + 1)), 'PX', CLEAR_MARK_TTL_MS)
end

local function fence_holds(key, mark, read_at)
  return (redis.call('GET', key) or '0') == mark and now - tonumber(read_at) <= FENCE_LIFETIME_MS
end
