local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
local user, ticket = ARGV[2], ARGV[3]
-- Fenced first: a clear since the caller's consent check refuses the write, changing nothing.
if not fence_holds(KEYS[5], ARGV[10], ARGV[11]) then return {4, 0, 0} end
local old = redis.call('HGET', KEYS[3], ARGV[6])
if old and not is_record(old) then old = nil end
-- An update within the user's cell (the common case): the old member's keys are this call's
-- own, and the stay is no jump (a move of 0 m), so neither is worked out from the record.
local same = old and string.sub(old, 14, 21) == string.sub(ARGV[7], 1, 8)
local old_purge = old and tonumber(string.sub(old, 1, 13))
local live = old and old_purge > now
if KEYS[6] then
  -- The update rate, then the jump cap, before anything changes: a refusal counts nothing.
  local now_us = clock_us()
  local next_tat, wait = gcra(KEYS[6], tonumber(ARGV[12]), tonumber(ARGV[13]), now_us)
  if not next_tat then return {0, wait, 0} end
  if ARGV[14] ~= '' and live and not same then
    local cell = string.sub(old, 14, 21)
    local up = parent_of(cell, math.floor(string.byte(cell, 2) / 16) - 1)
    local near = false
    for i = 1, #ARGV[14], 8 do
      if string.sub(ARGV[14], i, i + 7) == up then near = true end
    end
    if not near then return {2, now, old} end
  end
  -- A fresh start (no live entry to judge a jump from) counts against its own rate.
  local start_tat
  if KEYS[7] and not live then
    local start_wait
    start_tat, start_wait = gcra(KEYS[7], tonumber(ARGV[15]), tonumber(ARGV[16]), now_us)
    if not start_tat then return {3, start_wait, 0} end
  end
  gcra_keep(KEYS[6], next_tat, now_us)
  if start_tat then gcra_keep(KEYS[7], start_tat, now_us) end
end
-- Renewed in place (most updates): the user's live member in this cell is the only one of
-- theirs there and the one their record names, and the cell's due entry and the partition's
-- schedule fall at or before its deadline, so neither can be later than the new one; only the
-- member's name and the keys' deadlines change (docs/decisions.md, "An update renewed in
-- place"). A record of the earlier layout takes the general path.
local renewal = same and live and #old == RECORD_LEN and purge >= old_purge
if renewal then
  drop_record_member(KEYS[1], old, user)
  redis.call('ZADD', KEYS[1], ticket, member(ARGV[1], purge, user))
  expire_at(KEYS[1], purge)
  expire_at_shared(KEYS[2], purge)
else
  if same then
    drop_record_member(KEYS[1], old, user)
  elseif old then
    -- Moved: the old cell loses every member of the user (add_member below drops them from
    -- the new one).
    local key, due, id = record_cell(old, tonumber(ARGV[9]))
    drop_record_member(key, old, user)
    drop_user(key, ticket, user)
    drop_if_empty(key, due, id)
  end
  add_member(KEYS[1], KEYS[2], ARGV[1], user, ticket, purge, ARGV[5])
end
redis.call('HSET', KEYS[3], ARGV[6], string.format('%013d', purge) .. ARGV[7])
expire_at(KEYS[3], purge)
if not renewal then redis.call('ZADD', KEYS[4], 'LT', num(purge), ARGV[8]) end
expire_at_shared(KEYS[4], purge + retention)
return {1, purge - retention, purge}
