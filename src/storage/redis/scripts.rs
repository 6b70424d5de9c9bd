//! Every Lua script the Redis store runs, in one place. Each script takes time from the Redis
//! server (`TIME`), so all service nodes agree on deadlines whatever their own clocks say.
//! Scripts that a cluster runs touch keys of one hash tag only (one slot); [`UPSERT`] and
//! [`CELLS_READ`] over several partitions run on a single node only, which allows it.

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

/// Adds (or renews) a user in a cell with `purge_at = now + retention` rounded down to the
/// second (deadlines in members are whole seconds, so the replies say exactly when the data
/// goes) and `last_active = purge_at - retention`, replacing any member of the same user
/// there (found by its ticket, without a scan).
/// KEYS: cell, due. ARGV: gender tag, user id, ticket, retention ms, cell id.
/// Returns `{last_active, purge_at}`.
pub static CELL_ADD: LazyLock<Script> = LazyLock::new(|| {
    cell_script(
        r"
local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
add_member(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], purge, ARGV[5])
return {purge - retention, purge}
",
    )
});

/// H3 on raw cells inside a script: the key text of an 8-byte big-endian cell (h3o's
/// lower-case hex, no leading zeros) and its parent at a resolution (resolution field set,
/// finer digits set to 7, as H3 defines it).
pub(super) const CELLS: &str = r"
local function cell_hex(b8)
  local s = string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(b8, 1, 8))
  return (string.gsub(s, '^0+', ''))
end
local function parent_of(b8, r)
  local b = {string.byte(b8, 1, 8)}
  b[2] = r * 16 + b[2] % 16
  local k, i = (15 - r) * 3, 8
  while k >= 8 do
    b[i] = 255
    i, k = i - 1, k - 8
  end
  if k > 0 then
    local m = 2 ^ k
    b[i] = b[i] - b[i] % m + m - 1
  end
  return string.char(unpack(b))
end
";

/// Cell-set steps shared by the scripts that write cells: a user's members found by their
/// ticket (no scan) are dropped, a cell left empty leaves its partition's due index, and a
/// member is added with the cell's due time and the TTLs pushed forward.
const CELL_OPS: &str = r"
local function drop_user(key, ticket, user)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, ticket, ticket)) do
    if string.sub(m, 9) == user then redis.call('ZREM', key, m) end
  end
end
local function drop_if_empty(key, due, cell_id)
  if redis.call('ZCARD', key) == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', due, cell_id)
    if redis.call('ZCARD', due) == 0 then redis.call('DEL', due) end
  end
end
local function add_member(key, due, g, user, ticket, purge, cell_id)
  drop_user(key, ticket, user)
  redis.call('ZADD', key, ticket, member(g, purge, user))
  redis.call('ZADD', due, 'LT', num(purge), cell_id)
  expire_at(key, purge)
  expire_at(due, purge)
end
";

/// A script that writes cells: [`script`]'s helpers plus [`CELLS`] and [`CELL_OPS`].
fn cell_script(body: &str) -> Script {
    Script::new(&format!("{NOW}{EXPIRE_AT}{MEMBERS}{CELLS}{CELL_OPS}{body}"))
}

/// UpdateLocation on a single node, in one atomic call: adds or renews the user in their cell
/// (as [`CELL_ADD`]), writes their record (the service sends it without its 13-digit
/// `purge_at`, which only the server clock knows), after removing their previous member
/// (found by ticket, whatever deadline it carries, and as the old record names it, which a
/// node with another order secret wrote under another ticket; that cell's key is derived
/// from the old record: an undeclared key, which a single node allows and a cluster would
/// not, so a cluster takes the step-by-step path),
/// and schedules the partition's sweep (as [`PART_SCHEDULE`]).
/// KEYS: cell, due, user hash, parts. ARGV: gender tag, user id, ticket, retention ms, cell
/// id, field, record without `purge_at`, partition id, partition resolution.
/// Returns `{last_active, purge_at}`.
pub static UPSERT: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        r"
local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
local user, ticket = ARGV[2], ARGV[3]
local old = redis.call('HGET', KEYS[3], ARGV[6])
if old and is_record(old) then
  local key, due, id = record_cell(old, tonumber(ARGV[9]))
  drop_record_member(key, old, user)
  if id ~= ARGV[5] then
    -- Moved: the old cell loses every member of the user (add_member below drops them from
    -- the new one).
    drop_user(key, ticket, user)
    drop_if_empty(key, due, id)
  end
end
add_member(KEYS[1], KEYS[2], ARGV[1], user, ticket, purge, ARGV[5])
redis.call('HSET', KEYS[3], ARGV[6], string.format('%013.0f', purge) .. ARGV[7])
expire_at(KEYS[3], purge)
redis.call('ZADD', KEYS[4], 'LT', num(purge), ARGV[8])
expire_at(KEYS[4], purge + retention)
return {purge - retention, purge}
",
    )
});

/// Where a user's record says their cell set and its due index are (single node only: the
/// keys are derived, not declared). `rec` is a record (`keys::encode_record`), `res` the
/// partition resolution. Returns the cell key, the due key and the cell id.
const RECORD_CELL: &str = r"
local function record_cell(rec, res)
  local cell = string.sub(rec, 14, 21)
  local part = cell_hex(parent_of(cell, res))
  local id = cell_hex(cell)
  return 'vc:n:{' .. part .. '}:c:' .. id, 'vc:n:{' .. part .. '}:due', id
end
local function is_record(rec)
  return #rec == RECORD_LEN or #rec == LEGACY_RECORD_LEN
end
local function flags_of(rec)
  if #rec == LEGACY_RECORD_LEN then return string.byte(rec, 32) end
  return string.byte(rec, 22)
end
local function record_gender(rec)
  local g = flags_of(rec) % 4
  if g == 1 then return 'f' elseif g == 2 then return 'm' end
  return 'u'
end
local function drop_record_member(key, rec, user)
  redis.call('ZREM', key, member(record_gender(rec), tonumber(string.sub(rec, 1, 13)), user))
end
local function u32be(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end
local function left_record(rec, purge, retention)
  local flags = flags_of(rec)
  if flags % 8 < 4 then flags = flags + 4 end
  return string.format('%013.0f', purge) .. string.sub(rec, 14, 21) .. string.char(flags)
    .. u32be(retention)
end
";

/// A script that reads cells from records: [`cell_script`] plus [`RECORD_CELL`], with the
/// record lengths of `keys` (a record of the earlier layout is read too, and rewritten in the
/// current one: see `keys`).
fn record_script(body: &str) -> Script {
    let lengths = format!(
        "local RECORD_LEN, LEGACY_RECORD_LEN = {}, {}\n",
        super::keys::RECORD_LEN,
        super::keys::LEGACY_RECORD_LEN
    );
    Script::new(&format!(
        "{NOW}{EXPIRE_AT}{MEMBERS}{CELLS}{CELL_OPS}{lengths}{RECORD_CELL}{body}"
    ))
}

/// LeaveNearby on a single node, in one atomic call: if the user has a live record, renews
/// their member (found by ticket) and their record with `purge_at = now + retention`, marks
/// the record left, and schedules the partition's sweep. Creates nothing when there is no
/// live record, so a Leave can never bring back what a Clear or a withdrawal removed.
/// KEYS: user hash, parts. ARGV: field, user id, ticket, retention ms, partition resolution.
/// Returns `{last_active, purge_at}`, or nil when the user is not in the
/// feature.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec or not is_record(rec) or tonumber(string.sub(rec, 1, 13)) <= now then
  return nil
end
local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
local key, due, id = record_cell(rec, tonumber(ARGV[5]))
drop_record_member(key, rec, ARGV[2])
add_member(key, due, record_gender(rec), ARGV[2], ARGV[3], purge, id)
redis.call('HSET', KEYS[1], ARGV[1], left_record(rec, purge, retention))
expire_at(KEYS[1], purge)
local part = string.match(key, '{(.-)}')
redis.call('ZADD', KEYS[2], 'LT', num(purge), part)
expire_at(KEYS[2], purge + retention)
return {purge - retention, purge}
",
    )
});

/// ClearLocation of one feature on a single node, in one atomic call: deletes the user's
/// record and every member of theirs in the record's cell (found by ticket, whatever
/// deadline it carries). KEYS: user hash. ARGV: field, user id, ticket, partition resolution.
/// Returns 1 when there was a record, else 0.
pub static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        r"
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
",
    )
});

/// Renews a user's member in a cell, found by ticket or as their record names it, only if one
/// is there: the cluster's first step of LeaveNearby, which must not re-create a member a
/// Clear removed. KEYS: cell, due. ARGV: gender tag, user id, ticket, retention ms, cell id,
/// the member the record names.
/// Returns `{last_active, purge_at}`, or nil when the user has no member there.
pub static CELL_RENEW: LazyLock<Script> = LazyLock::new(|| {
    cell_script(
        r"
local found = redis.call('ZREM', KEYS[1], ARGV[6]) == 1
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[3])) do
  if string.sub(m, 9) == ARGV[2] then found = true end
end
if not found then return nil end
local retention = tonumber(ARGV[4])
local purge = math.floor((now + retention) / 1000) * 1000
add_member(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], purge, ARGV[5])
return {purge - retention, purge}
",
    )
});

/// Removes every member of a user from a cell (found by ticket, and the member their record
/// names, ARGV[4], which a node with another order secret wrote under another ticket),
/// dropping the cell when empty. KEYS: cell, due. ARGV: user id, ticket, cell id, member.
/// Returns 1.
pub static CELL_DROP_USER: LazyLock<Script> = LazyLock::new(|| {
    cell_script(
        r"
drop_user(KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[4])
drop_if_empty(KEYS[1], KEYS[2], ARGV[3])
return 1
",
    )
});

/// Marks a user's record left with a new `purge_at`, only if the record is there and still
/// in the cell whose member was renewed: the cluster's second step of LeaveNearby.
/// KEYS: user hash. ARGV: field, cell (8 raw bytes), purge_at ms, retention ms. Returns 1
/// when written, else 0.
pub static USER_LEAVE: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec or not is_record(rec) or string.sub(rec, 14, 21) ~= ARGV[2] then
  return 0
end
local purge = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], left_record(rec, purge, tonumber(ARGV[4])))
expire_at(KEYS[1], purge)
return 1
",
    )
});

/// Deletes a user's record and returns it (or nil): the cluster's last step of a Clear,
/// which then removes the member of whatever cell that record named.
/// KEYS: user hash. ARGV: field.
pub static USER_TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return nil end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return rec
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

/// Reads a user's record with the server time: `{now, record or nil}` (on a cluster, where
/// `TIME` sent alone could reach another node).
/// KEYS: user hash. ARGV: field.
pub static USER_GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
return {now, redis.call('HGET', KEYS[1], ARGV[1])}
",
    )
});

/// The safety net of the sweep: deletes every record of a user hash whose deadline (floored to
/// whole seconds) has passed, whether or not its cell member still points at it. KEYS: user
/// hash. Returns how many were deleted.
pub static USER_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        r"
local cut = math.floor(now / 1000) * 1000
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local rec = all[i + 1]
  local purge = tonumber(string.sub(rec, 1, 13))
  if is_record(rec) and purge and math.floor(purge / 1000) * 1000 <= cut then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
if n > 0 and redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return n
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
/// KEYS: cells sorted by band: of one partition on a cluster, of any partitions on a single
/// node (which allows a script keys of several slots). ARGV: n (members wanted), offset (the
/// order's rotation), cursor band (-1 for none), cursor key, gender char ('' for any), viewer,
/// k, then k excluded users, then one band per key.
///
/// A member's key is (ticket - offset) mod 2^52, and tickets are uniform, so for each band
/// (cells sharing it) the script reads every cell's members with keys in one window
/// `[lo, hi)` sized from the band's total (ZCARD) to hold 1.5 times what is still wanted
/// (3 times under a gender filter), widening it (doubling) only when the admitted members
/// fall short. Per member the script allocates nothing but the deadline digits, unless a
/// block list is given (a deadline of whole seconds `d` is visible iff `d > floor(now / 1000)`,
/// the same rule as `d * 1000 > now`; compared as numbers, since Lua compares strings by the
/// server's locale). Members are admitted
/// here (gender, viewer, block list, deadline), so the count is exact; once n are in hand
/// the band is complete below `hi` and no later band can make the page. Every admitted
/// member with a key below `hi` is returned; the caller ranks them. Work and reply are thus
/// about 1.5n members whatever the density.
/// One call examines at most about `20n + 2000` members: when admitted members are rare (a
/// gender filter in a crowd of one gender, a long block list, a stalled sweeper) it stops at a
/// window's end, or at the end of the band before (key 2^52), and says where; the page ends
/// there (the next page continues from it).
/// Returns `{now, stop band, stop key, i1, 'member\nmember...', i2, ...}`, stop band -1 when
/// it did not stop, `i` the 1-based key index.
pub static CELLS_READ: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local M = 4503599627370496
local n = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local after_band = tonumber(ARGV[3])
local after_key = tonumber(ARGV[4])
local want_g = ARGV[5]
local viewer = ARGV[6]
local k = tonumber(ARGV[7])
local skip = {}
for j = 1, k do skip[ARGV[7 + j]] = true end
local base = 7 + k
local factor, g = 1.5, nil
if want_g ~= '' then factor, g = 3, string.byte(want_g) end
local now_s = math.floor(now / 1000)
local vlen = 8 + #viewer
local function admit(m, list)
  if (g == nil or string.byte(m) == g) and tonumber(string.sub(m, 2, 8), 36) > now_s
      and not (#m == vlen and string.sub(m, 9) == viewer)
      and (k == 0 or not skip[string.sub(m, 9)]) then
    list[#list + 1] = m
  end
end
local examined, budget = 0, 20 * n + 2000
local function range(key, lo, hi, list)
  local got = redis.call('ZRANGEBYSCORE', key, num(lo), '(' .. num(hi))
  examined = examined + #got
  for _, m in ipairs(got) do
    admit(m, list)
  end
end
local function read(key, a, b, list)
  local s, e = offset + a, offset + b
  if s >= M then
    range(key, s - M, e - M, list)
  elseif e <= M then
    range(key, s, e, list)
  else
    range(key, s, M, list)
    range(key, 0, e - M, list)
  end
end
local out = {now, -1, 0}
local count = 0
local i = 1
local prev_band = nil
while i <= #KEYS and count < n and out[2] == -1 do
  local band = tonumber(ARGV[base + i])
  if examined >= budget and prev_band ~= nil then
    -- Out of budget between bands: everything up to the end of the previous band is read.
    out[2], out[3] = prev_band, M
    break
  end
  local j, total = i, 0
  while j <= #KEYS and tonumber(ARGV[base + j]) == band do
    total = total + redis.call('ZCARD', KEYS[j])
    j = j + 1
  end
  local lo = 0
  if band == after_band then lo = after_key + 1 end
  local lists = {}
  for c = i, j - 1 do lists[c] = {} end
  if total > 0 and lo < M then
    local need = n - count
    local width = math.ceil(M * math.min(1, (factor * need + 8) / total))
    local from, got = lo, 0
    while true do
      local to = math.min(from + width, M)
      for c = i, j - 1 do
        local before = #lists[c]
        read(KEYS[c], from, to, lists[c])
        got = got + #lists[c] - before
      end
      if got >= need or to >= M then break end
      if examined >= budget then
        out[2], out[3] = band, to
        break
      end
      from, width = to, width * 2
    end
    count = count + got
  end
  for c = i, j - 1 do
    if #lists[c] > 0 then
      out[#out + 1] = c
      out[#out + 1] = table.concat(lists[c], '\n')
    end
  end
  prev_band = band
  i = j
end
return out
",
    )
});

/// Lists the members of a partition due at the server's now: `{cut, {cell, ...}, {member,
/// ...}}`, cut = now floored to the second, the cells those members were read from (at most
/// ARGV[2] cells, and no more cells once ARGV[3] members were examined, but always one), and
/// their due members. [`SWEEP_CELLS`] then sweeps exactly these cells: a cell whose members
/// were not read here keeps them, so no record is ever left without its member.
/// KEYS: due. ARGV: cell key prefix, cell limit, member budget.
pub static SWEEP_FIND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local cut = math.floor(now / 1000) * 1000
local budget = tonumber(ARGV[3])
local read, due, examined = {}, {}, 0
local cells = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(cut), 'LIMIT', 0, tonumber(ARGV[2]))
for _, c in ipairs(cells) do
  if examined >= budget then break end
  local members = redis.call('ZRANGE', ARGV[1] .. c, 0, -1)
  examined = examined + #members
  read[#read + 1] = c
  for _, m in ipairs(members) do
    if deadline_ms(m) <= cut then due[#due + 1] = m end
  end
end
return {cut, read, due}
",
    )
});

/// Removes the members due at ARGV[2] (the cut SWEEP_FIND returned, whose users' records are
/// already deleted) from the cells SWEEP_FIND read (ARGV[3..]) and re-scores those cells;
/// other due cells wait for the next visit. Returns the partition's earliest deadline left
/// (at or before the cut when due cells remain), or nil when it is empty.
/// KEYS: due. ARGV: cell key prefix, cut, cell, cell, ...
pub static SWEEP_CELLS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local cut = tonumber(ARGV[2])
for i = 3, #ARGV do
  local c = ARGV[i]
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

/// Appends a consent event: the feature's state and the history in one step. Redis does not
/// undo a script cut short, so the more restrictive write goes first: a withdrawal sets the
/// state before its event, a grant appends its event before the state says `1`. Then, if the
/// feature now has more than ARGV[4] events, its oldest one goes (`domain::consent::
/// HISTORY_PER_FEATURE`; the history is at most that many per feature, so this reads a
/// bounded list, and the latest event of each feature, its current record, always stays).
/// KEYS: the feature's state key, history list. ARGV: encoded record, state (`1` granted,
/// `0` not), the feature's tag (the record's second field), cap.
pub static CONSENT_APPEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if ARGV[2] == '1' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
local mine, oldest = 0, nil
local of_feature = '^[^\31]*\31' .. ARGV[3] .. '\31'
for _, e in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if string.find(e, of_feature) then
    mine = mine + 1
    if oldest == nil then oldest = e end
  end
end
if mine > tonumber(ARGV[4]) then redis.call('LREM', KEYS[2], 1, oldest) end
return 1
",
    )
});

/// Records an owed purge at the server's now. KEYS: owed. ARGV: member.
pub static PURGE_OWE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZADD', KEYS[1], now_s, ARGV[1])
return 1
",
    )
});

/// Purges owed for at least ARGV[1] ms, oldest first, at most ARGV[2]. KEYS: owed.
pub static PURGES_OWED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(now - tonumber(ARGV[1])), 'LIMIT', 0,
  tonumber(ARGV[2]))
",
    )
});

/// Deletes a user's consent records; returns how many events there were.
/// KEYS: history list, then every current record.
pub static CONSENT_FORGET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', unpack(KEYS))
return n
",
    )
});

/// Shake's key names inside scripts (every one under the `{shake}` hash tag) and the steps
/// several Shake scripts share: dropping a pending shake, and a user's history, "named by"
/// index and tombstone.
const SHAKE_OPS: &str = r"
local P = 'vc:s:{shake}:'
local function unpend(id)
  local rec = redis.call('HGET', P .. 'p', id)
  if not rec then return false end
  local user, coarse = string.match(rec, '^([^|]*)|'), string.match(rec, '|([^|]*)$')
  redis.call('HDEL', P .. 'p', id)
  redis.call('ZREM', P .. 'c:' .. coarse, id)
  redis.call('ZREM', P .. 'all', id)
  return user
end
local function entry_partner(e)
  return string.match(e, '^([^|]*)|')
end
local function forget_box(id)
  local pair = redis.call('LPOP', P .. 'm:' .. id)
  if pair then
    redis.call('DEL', P .. 'm:' .. id)
    redis.call('ZREM', P .. 'mdue', id)
    local partner, owner = string.match(pair, '^([^|]*)|'), string.match(pair, '|([^|]*)$')
    redis.call('SREM', P .. 'u:' .. partner, id)
    redis.call('SREM', P .. 'u:' .. owner, id)
  end
  return pair
end
local function cleared_since(tomb, at)
  local t = redis.call('GET', P .. 'x:' .. tomb)
  return t ~= false and tonumber(t) >= at
end
";

/// A Shake script: [`script`]'s helpers plus [`SHAKE_OPS`].
fn shake_script(body: &str) -> Script {
    Script::new(&format!("{NOW}{EXPIRE_AT}{MEMBERS}{SHAKE_OPS}{body}"))
}

/// Shake: pairs an arriving shake with the nearest pending one, or leaves it pending.
/// Everything Shake holds lives under the `{shake}` hash tag, so pairing, clearing and
/// sweeping are each one atomic script whichever node runs them.
/// ARGV: id, user, cell, centre lat, centre lng, window ms, node, own coarse cell,
/// candidates per coarse cell, the far pool's size, then the coarse cells of each ring from 0
/// as '|'-joined lists.
/// The partner is chosen by `domain::shake::choose`'s rule, step for step (its constants come
/// in as ARGV; `dist2` is `shake::separation`): the oldest few candidates per coarse cell,
/// through the first ring that has a partner and the next, then the first of the far pool
/// (soonest to expire first). A differential test holds the two to it.
/// A pending shake's id is in its user's set (`u:<user>`) until it is withdrawn, taken or
/// swept, and a mailbox's id also in the set of the user it names, so clearing a user finds
/// every one of their shakes and every uncollected pairing with them.
/// Returns `{1, partner, partner cell, now}` or `{0, now, expires}`.
pub static SHAKE_PAIR: LazyLock<Script> = LazyLock::new(|| {
    shake_script(
        r"
local function parse(rec)
  local u, c, lat, lng, arrived, expires, node, coarse =
    string.match(rec, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return {user = u, cell = c, lat = tonumber(lat), lng = tonumber(lng), arrived = tonumber(arrived),
          expires = tonumber(expires), node = node, coarse = coarse}
end
local function dist2(lat1, lng1, lat2, lng2)
  local x = math.rad(lng2 - lng1) * math.cos(math.rad((lat1 + lat2) / 2))
  local y = math.rad(lat2 - lat1)
  return x * x + y * y
end
local lat, lng = tonumber(ARGV[4]), tonumber(ARGV[5])
local best, best_id, best_d, found_ring = nil, nil, nil, nil
local function consider(id)
  local rec = redis.call('HGET', P .. 'p', id)
  if not rec then return end
  local p = parse(rec)
  if p.user == ARGV[2] or p.expires <= now then return end
  local d = dist2(lat, lng, p.lat, p.lng)
  if best == nil or d < best_d or (d == best_d and p.arrived < best.arrived) then
    best, best_id, best_d = p, id, d
  end
end
local per_cell, far_pool = tonumber(ARGV[9]), tonumber(ARGV[10])
for ring = 0, #ARGV - 11 do
  if found_ring ~= nil and ring > found_ring + 1 then break end
  for coarse in string.gmatch(ARGV[11 + ring], '[^|]+') do
    for _, id in ipairs(redis.call('ZRANGE', P .. 'c:' .. coarse, 0, per_cell - 1)) do consider(id) end
  end
  if best ~= nil and found_ring == nil then found_ring = ring end
end
if best == nil then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'all', '(' .. now_s, '+inf', 'LIMIT', 0, far_pool)) do
    consider(id)
    if best ~= nil then break end
  end
end
if best ~= nil then
  unpend(best_id)
  local box = P .. 'm:' .. best_id
  redis.call('RPUSH', box, ARGV[2] .. '|' .. ARGV[3] .. '|' .. now_s .. '|' .. best.user)
  expire_at(box, best.expires + 10000)
  redis.call('ZADD', P .. 'mdue', num(best.expires + 10000), best_id)
  expire_at(P .. 'u:' .. best.user, best.expires + 10000)
  -- The mailbox names the arriving user too: a Clear of theirs must find it.
  redis.call('SADD', P .. 'u:' .. ARGV[2], best_id)
  expire_at(P .. 'u:' .. ARGV[2], best.expires + 10000)
  redis.call('PUBLISH', 'vc:s:wake:' .. best.node, best_id)
  return {1, best.user, best.cell, now}
end
local expires = now + tonumber(ARGV[6])
local rec = table.concat({ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_s, num(expires), ARGV[7], ARGV[8]}, '|')
redis.call('HSET', P .. 'p', ARGV[1], rec)
redis.call('ZADD', P .. 'c:' .. ARGV[8], now_s, ARGV[1])
redis.call('ZADD', P .. 'all', num(expires), ARGV[1])
redis.call('SADD', P .. 'u:' .. ARGV[2], ARGV[1])
for _, k in ipairs({P .. 'p', P .. 'c:' .. ARGV[8], P .. 'all', P .. 'u:' .. ARGV[2]}) do
  expire_at(k, expires)
end
return {0, now, expires}
",
    )
});

/// Takes a delivered pairing from a shake's mailbox; with ARGV[2] = '1' also withdraws the
/// shake if it is still pending. ARGV: id, withdraw flag, user. Returns the pairing text or
/// nil.
pub static SHAKE_TAKE: LazyLock<Script> = LazyLock::new(|| {
    shake_script(
        r"
if ARGV[2] == '1' then
  unpend(ARGV[1])
  redis.call('SREM', P .. 'u:' .. ARGV[3], ARGV[1])
end
return forget_box(ARGV[1])
",
    )
});

/// Withdraws every pending shake of a user and, with ARGV[2] = '1' (a Clear, a withdrawal,
/// an erasure), also deletes their uncollected pairings, their history, every entry naming
/// them in others' histories (found through `n:<user>`), and leaves a tombstone so a match
/// recorded later for or against them (by a call still finishing) is dropped.
/// ARGV: user, clear flag, tombstone ms, tombstone name. Returns `{entries removed, last history deadline}`
/// (the deadline 0 when there is no history or it was cleared).
pub static SHAKE_CLEAR_USER: LazyLock<Script> = LazyLock::new(|| {
    shake_script(
        r"
local user, clear = ARGV[1], ARGV[2] == '1'
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'u:' .. user)) do
  if unpend(id) then n = n + 1 end
  if clear and forget_box(id) then n = n + 1 end
end
if clear then
  redis.call('DEL', P .. 'u:' .. user)
  local mine = redis.call('ZRANGE', P .. 'h:' .. user, 0, -1)
  n = n + #mine
  for _, e in ipairs(mine) do redis.call('ZREM', P .. 'n:' .. entry_partner(e), user) end
  redis.call('DEL', P .. 'h:' .. user)
  for _, other in ipairs(redis.call('ZRANGE', P .. 'n:' .. user, 0, -1)) do
    local key = P .. 'h:' .. other
    for _, e in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if entry_partner(e) == user then redis.call('ZREM', key, e) end
    end
  end
  redis.call('DEL', P .. 'n:' .. user)
  redis.call('ZREM', P .. 'hdue', user)
  redis.call('SET', P .. 'x:' .. ARGV[4], now_s, 'PX', tonumber(ARGV[3]))
  return {n, 0}
end
local last = redis.call('ZRANGE', P .. 'h:' .. user, -1, -1, 'WITHSCORES')
return {n, last[2] or 0}
",
    )
});

/// Removes expired pending shakes and uncollected mailboxes (at most 1,000 of each), and
/// the expired history of at most ARGV[1] users due. Returns `{removed, users left due}`.
pub static SHAKE_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    shake_script(
        r"
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'all', '-inf', now_s, 'LIMIT', 0, 1000)) do
  local user = unpend(id)
  if user then redis.call('SREM', P .. 'u:' .. user, id) end
  redis.call('ZREM', P .. 'all', id)
  n = n + 1
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'mdue', '-inf', now_s, 'LIMIT', 0, 1000)) do
  forget_box(id)
  redis.call('ZREM', P .. 'mdue', id)
  n = n + 1
end
local due = redis.call('ZRANGEBYSCORE', P .. 'hdue', '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[1]))
for _, user in ipairs(due) do
  local h, x = P .. 'h:' .. user, P .. 'n:' .. user
  n = n + redis.call('ZREMRANGEBYSCORE', h, '-inf', now_s)
  redis.call('ZREMRANGEBYSCORE', x, '-inf', now_s)
  local next = nil
  for _, k in ipairs({h, x}) do
    local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
    if #first > 0 and (next == nil or tonumber(first[2]) < next) then next = tonumber(first[2]) end
  end
  if next == nil then
    redis.call('DEL', h, x)
    redis.call('ZREM', P .. 'hdue', user)
  else
    redis.call('ZADD', P .. 'hdue', num(next), user)
  end
end
return {n, redis.call('ZCOUNT', P .. 'hdue', '-inf', now_s)}
",
    )
});

/// Adds a match to a user's history (a sorted set of `partner|band|matched_at` by deadline,
/// at most ARGV[6] entries: the oldest go first), indexes the user under the partner's
/// "named by" set, and schedules both for the sweep; nothing is written when either side
/// cleared Shake at or after the match (a tombstone), so a call that finishes late never
/// brings a cleared pair back. ARGV: user, partner, matched_at ms, entry, deadline ms, cap,
/// the user's and the partner's tombstone names. Returns 1 when written.
pub static HISTORY_ADD: LazyLock<Script> = LazyLock::new(|| {
    shake_script(
        r"
local user, partner, at = ARGV[1], ARGV[2], tonumber(ARGV[3])
if cleared_since(ARGV[7], at) or cleared_since(ARGV[8], at) then return 0 end
local deadline = tonumber(ARGV[5])
local h, x = P .. 'h:' .. user, P .. 'n:' .. partner
redis.call('ZADD', h, deadline, ARGV[4])
local over = redis.call('ZCARD', h) - tonumber(ARGV[6])
if over > 0 then redis.call('ZREMRANGEBYRANK', h, 0, over - 1) end
redis.call('ZADD', x, 'GT', deadline, user)
redis.call('ZADD', P .. 'hdue', 'LT', deadline, user)
redis.call('ZADD', P .. 'hdue', 'LT', deadline, partner)
expire_at(h, deadline)
expire_at(x, deadline)
expire_at(P .. 'hdue', deadline)
return 1
",
    )
});

/// A user's unexpired history, oldest first, with the server time: `{now, entry, ...}`.
/// ARGV: user.
pub static HISTORY_READ: LazyLock<Script> = LazyLock::new(|| {
    shake_script(
        r"
local out = {now}
for _, e in ipairs(redis.call('ZRANGEBYSCORE', P .. 'h:' .. ARGV[1], '(' .. now_s, '+inf')) do
  out[#out + 1] = e
end
return out
",
    )
});
