//! Every Lua script the Redis store runs, in one place. Each script touches keys of one hash
//! tag only (one cluster slot), and takes time from the Redis server (`TIME`), so all service
//! nodes agree on deadlines whatever their own clocks say.

use std::sync::LazyLock;

use redis::Script;

/// Milliseconds from the server clock, as `now` (and its integer text as `now_s`).
const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d', now)
";

/// Sets a key's TTL to `at` plus a grace unless it already lives longer (NX for keys without
/// TTL, then GT). The grace matters: a script sees a key past its TTL as absent while Redis
/// may keep it in memory for minutes, so if the TTL fell on the deadline itself, the sweeper
/// would find nothing to delete and the data would linger. With the grace the sweeper deletes
/// at the deadline, and the TTL only acts when no service node runs at all.
const EXPIRE_AT: &str = r"
local function expire_at(key, at)
  redis.call('PEXPIREAT', key, at + 30000, 'NX')
  redis.call('PEXPIREAT', key, at + 30000, 'GT')
end
";

/// Cell members: `<gender><deadline: 7 base-36 digits of whole seconds><user id>`.
const MEMBERS: &str = r"
local B36 = '0123456789abcdefghijklmnopqrstuvwxyz'
local function member(g, purge_ms, user)
  local n = math.floor(purge_ms / 1000)
  local s = ''
  for _ = 1, 7 do
    local r = n % 36
    s = string.sub(B36, r + 1, r + 1) .. s
    n = math.floor(n / 36)
  end
  return g .. s .. user
end
local function deadline_ms(m)
  return tonumber(string.sub(m, 2, 8), 36) * 1000
end
local function num(x)
  return string.format('%.0f', x)
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW}{EXPIRE_AT}{MEMBERS}{body}"))
}

/// Adds (or renews) a user in a cell with `purge_at = now + retention`, replacing any member
/// of the same user there (found by its ticket, without a scan).
/// KEYS: cell, due. ARGV: gender tag, user id, ticket, retention ms, cell id.
/// Returns `{now, purge_at}`.
pub static CELL_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local purge = now + tonumber(ARGV[4])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[3])) do
  if string.sub(old, 9) == ARGV[2] then redis.call('ZREM', KEYS[1], old) end
end
redis.call('ZADD', KEYS[1], ARGV[3], member(ARGV[1], purge, ARGV[2]))
redis.call('ZADD', KEYS[2], 'LT', num(math.floor(purge / 1000) * 1000), ARGV[5])
expire_at(KEYS[1], purge)
expire_at(KEYS[2], purge)
return {now, purge}
",
    )
});

/// Removes a member from its cell, dropping the cell (and the due index) when empty.
/// KEYS: cell, due. ARGV: member, cell id. Returns how many were removed.
pub static CELL_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[2]) end
end
return n
",
    )
});

/// Writes a user's record and returns the previous one (or nil).
/// KEYS: user hash. ARGV: field, record, purge_at ms.
pub static USER_PUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
expire_at(KEYS[1], tonumber(ARGV[3]))
return old
",
    )
});

/// Reads a user's record with the server time: `{now, record or nil}`.
/// KEYS: user hash. ARGV: field.
pub static USER_GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
return {now, redis.call('HGET', KEYS[1], ARGV[1])}
",
    )
});

/// Deletes a user's record if it still equals the one read before (a concurrent update
/// wins). KEYS: user hash. ARGV: field, expected record. Returns 1 when deleted.
pub static USER_DELETE_IF: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
",
    )
});

/// Deletes the records among ARGV[2..] whose deadline (the first 13 bytes, decimal ms,
/// floored to whole seconds like the members') is at or before ARGV[1].
/// KEYS: user hash. Returns how many were deleted.
pub static USER_PURGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local cut = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local rec = redis.call('HGET', KEYS[1], ARGV[i])
  if rec then
    local purge = tonumber(string.sub(rec, 1, 13))
    if purge and math.floor(purge / 1000) * 1000 <= cut then
      redis.call('HDEL', KEYS[1], ARGV[i])
      n = n + 1
    end
  end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return n
",
    )
});

/// Reads cells in the viewer's in-band order and only as far as the page needs.
/// KEYS: cells of one partition, sorted by band. ARGV: n (members wanted), offset (the
/// order's rotation), cursor band (-1 for none), cursor key, then one band per key.
/// For each cell it reads up to n members by ascending key = (ticket - offset) mod 2^52
/// (after the cursor in the cursor's band), and it stops at a band boundary once n members
/// are in hand: no member of a later band can make the page. Members past their deadline are
/// left for the caller to drop (the sweeper removes them within a second).
/// Returns `{now, i1, 'member\nmember...', i2, ...}`, `i` the 1-based key index.
pub static CELLS_READ: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local M = 4503599627370496
local n = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local after_band = tonumber(ARGV[3])
local after_key = tonumber(ARGV[4])
local out = {now}
local count, band_now = 0, nil
for i, key in ipairs(KEYS) do
  local band = tonumber(ARGV[4 + i])
  if band ~= band_now then
    if count >= n then break end
    band_now = band
  end
  local lo = 0
  if band == after_band then lo = after_key + 1 end
  local s = offset + lo
  local got
  if s < M then
    got = redis.call('ZRANGEBYSCORE', key, num(s), '+inf', 'LIMIT', 0, n)
    if #got < n and offset > 0 then
      local more = redis.call('ZRANGEBYSCORE', key, 0, '(' .. num(offset), 'LIMIT', 0, n - #got)
      for _, m in ipairs(more) do got[#got + 1] = m end
    end
  else
    got = redis.call('ZRANGEBYSCORE', key, num(s - M), '(' .. num(offset), 'LIMIT', 0, n)
  end
  if #got > 0 then
    out[#out + 1] = i
    out[#out + 1] = table.concat(got, '\n')
    count = count + #got
  end
end
return out
",
    )
});

/// Lists the members of a partition due at the server's now (at most ARGV[2] cells):
/// `{cut, member, member, ...}`, cut = now floored to the second. KEYS: due.
/// ARGV: cell key prefix, cell limit.
pub static SWEEP_FIND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local cut = math.floor(now / 1000) * 1000
local out = {cut}
local cells = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(cut), 'LIMIT', 0, tonumber(ARGV[2]))
for _, c in ipairs(cells) do
  for _, m in ipairs(redis.call('ZRANGE', ARGV[1] .. c, 0, -1)) do
    if deadline_ms(m) <= cut then out[#out + 1] = m end
  end
end
return out
",
    )
});

/// Removes the members due at ARGV[2] (the cut SWEEP_FIND returned, whose users' records are
/// already deleted) and re-scores the due cells. Returns the partition's earliest deadline
/// left, or nil when it is empty. KEYS: due. ARGV: cell key prefix, cut.
pub static SWEEP_CELLS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local cut = tonumber(ARGV[2])
local cells = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(cut))
for _, c in ipairs(cells) do
  local key = ARGV[1] .. c
  local earliest = nil
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local d = deadline_ms(m)
    if d <= cut then
      redis.call('ZREM', key, m)
    elseif earliest == nil or d < earliest then
      earliest = d
    end
  end
  if earliest == nil then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], c)
  else
    redis.call('ZADD', KEYS[1], num(earliest), c)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('DEL', KEYS[1])
  return nil
end
return first[2]
",
    )
});

/// Schedules a partition's next sweep no later than ARGV[1] (ZADD LT), and keeps the
/// partitions index alive. KEYS: parts. ARGV: at, partition, ttl-at.
pub static PART_SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZADD', KEYS[1], 'LT', ARGV[1], ARGV[2])
expire_at(KEYS[1], tonumber(ARGV[3]))
return 1
",
    )
});

/// Sets a partition's next sweep time after sweeping it (plain ZADD: see `sweep.rs`).
/// KEYS: parts. ARGV: at, partition, ttl-at.
pub static PART_RESCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
expire_at(KEYS[1], tonumber(ARGV[3]))
return 1
",
    )
});

/// Appends a consent event: current record and history in one step.
/// KEYS: consent hash, history list. ARGV: feature tag, encoded record.
pub static CONSENT_APPEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
",
    )
});

/// Deletes a user's consent records; returns how many events there were.
/// KEYS: consent hash, history list.
pub static CONSENT_FORGET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return n
",
    )
});
