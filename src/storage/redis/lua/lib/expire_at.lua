local function expire_at(key, at)
  redis.call('PEXPIREAT', key, at + TTL_GRACE_MS, 'NX')
  redis.call('PEXPIREAT', key, at + TTL_GRACE_MS, 'GT')
end
