local function expire_at(key, at)
  -- GT first: a write usually pushes a TTL later (one call); a key without a TTL counts as
  -- living forever for GT, so NX then gives it one.
  if redis.call('PEXPIREAT', key, at + TTL_GRACE_MS, 'GT') == 0 then
    redis.call('PEXPIREAT', key, at + TTL_GRACE_MS, 'NX')
  end
end
