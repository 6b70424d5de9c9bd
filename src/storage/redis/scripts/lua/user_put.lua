if not fence_holds(KEYS[2], ARGV[5], ARGV[6]) then return -1 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
expire_at(KEYS[1], tonumber(ARGV[3]))
if old and is_record(old) and string.sub(old, 14, 21) ~= string.sub(ARGV[2], 14, 21) then
  -- Moved: the old cell's member is dropped by the next step; until then it is a stray.
  strays_add(KEYS[1], ARGV[4], string.sub(old, 14, 21), tonumber(string.sub(old, 1, 13)), 0)
end
return old
