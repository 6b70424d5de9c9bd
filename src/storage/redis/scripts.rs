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

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW}{EXPIRE_AT}{body}"))
}

/// Adds (or renews) a member in its cell with `purge_at = now + retention`.
/// KEYS: cell, due. ARGV: member, retention ms, cell id, member to remove first ("" = none).
/// Returns `{now, purge_at}`.
pub static CELL_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local purge = now + tonumber(ARGV[2])
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[1], ARGV[4]) end
redis.call('ZADD', KEYS[1], purge, ARGV[1])
redis.call('ZADD', KEYS[2], 'LT', purge, ARGV[3])
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

/// Deletes the records among ARGV[2..] whose purge_at (the first 13 bytes, decimal) is at or
/// before ARGV[1].
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
    if purge and purge <= cut then
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

/// Reads the visible members of up to a page's worth of cells, with the server time:
/// `{now, i1, {member, score, ...}, i2, {...}, ...}` where `i` is the 1-based key index.
/// KEYS: cells (of one partition).
pub static CELLS_READ: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {now}
for i, key in ipairs(KEYS) do
  local m = redis.call('ZRANGEBYSCORE', key, '(' .. now_s, '+inf', 'WITHSCORES')
  if #m > 0 then
    out[#out + 1] = i
    out[#out + 1] = m
  end
end
return out
",
    )
});

/// Lists the members of a partition due at the server's now (at most ARGV[2] cells):
/// `{now, member, member, ...}`. KEYS: due. ARGV: cell key prefix, cell limit.
pub static SWEEP_FIND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {now}
local cells = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[2]))
for _, c in ipairs(cells) do
  local m = redis.call('ZRANGEBYSCORE', ARGV[1] .. c, '-inf', now_s)
  for _, x in ipairs(m) do out[#out + 1] = x end
end
return out
",
    )
});

/// Removes the members due at ARGV[2] (the `now` SWEEP_FIND returned, whose users' records
/// are already deleted) and re-scores the due cells. Returns the partition's earliest deadline
/// left, or nil when it is empty. KEYS: due. ARGV: cell key prefix, cut.
pub static SWEEP_CELLS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local cut = ARGV[2]
local cells = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cut)
for _, c in ipairs(cells) do
  local key = ARGV[1] .. c
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], c)
  else
    redis.call('ZADD', KEYS[1], first[2], c)
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
