-- The mark first, record or not: a write in flight that read the old one is refused.
if KEYS[2] then set_mark(KEYS[2], CLEAR_MARK_TTL_MS) end
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
if is_record(rec) then
  local key, due, id = record_cell(rec, tonumber(ARGV[4]))
  drop_user(key, ARGV[3], ARGV[2])
  drop_record_member(key, rec, ARGV[2])
  drop_if_empty(key, due, id)
end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
