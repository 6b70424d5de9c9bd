local function expire_at(key, at)
  -- GT first: a write usually pushes a TTL later (one call); a key without a TTL counts as
  -- living forever for GT, so NX then gives it one. The time as text, formatted once with `%d`
  -- (lib/members.lua's `num` says why).
  local t = string.format('%d', at + TTL_GRACE_MS)
  if redis.call('PEXPIREAT', key, t, 'GT') == 0 then
    redis.call('PEXPIREAT', key, t, 'NX')
  end
end
