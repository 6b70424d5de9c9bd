local function expire_at(key, at)
  -- GT first: a write usually pushes a TTL later (one call); a key without a TTL counts as
  -- living forever for GT, so NX then gives it one. The time as text, formatted once (`num`).
  local t = num(at + TTL_GRACE_MS)
  if redis.call('PEXPIREAT', key, t, 'GT') == 0 then
    redis.call('PEXPIREAT', key, t, 'NX')
  end
end
-- `expire_at` for a key that many writes share (a partition's due index, the partition
-- schedule), which every write within the same second gives the same deadline: there `GT`
-- changes nothing and `NX` must run to rule out a key without a TTL, two calls where reading
-- the TTL first (-1 for none, -2 for no key, where `PEXPIREAT` does nothing) makes one.
local function expire_at_shared(key, at)
  local t = at + TTL_GRACE_MS
  if redis.call('PEXPIRETIME', key) < t then
    redis.call('PEXPIREAT', key, num(t))
  end
end
