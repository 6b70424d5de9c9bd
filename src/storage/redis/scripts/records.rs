//! The scripts of user records: the single-node update, Leave and Clear, the cluster's record steps, fences, and the sweep's schedule of partitions and record shards.

use super::*;

lua_script! {
    /// UpdateLocation on a single node, in one atomic call: adds or renews the user in their cell
    /// (as [`CELL_ADD`]), writes their record (the service sends it without its 13-digit
    /// `purge_at`, which only the server clock knows), after removing their previous member
    /// (found by ticket, whatever deadline it carries, and as the old record names it, which a
    /// node with another order secret wrote under another ticket; that cell's key is derived
    /// from the old record: an undeclared key, which a single node allows and a cluster would
    /// not, so a cluster takes the step-by-step path),
    /// and schedules the partition's sweep (as [`PART_SCHEDULE`]). First of all, a fence that
    /// no longer holds (KEYS[5], the user's clear mark; ARGV[10], ARGV[11]: the mark read and
    /// when, `storage::Fence`) refuses the write, changing and counting nothing.
    /// With KEYS[6] (the user's update rate) it first counts the call (ARGV[12], ARGV[13]:
    /// interval and tolerance µs) and, when ARGV[14] is not empty, checks that the previous
    /// live record lies under one of its cells (8 raw bytes each, one resolution coarser):
    /// otherwise it does nothing and hands the record back for the caller's jump check.
    /// With KEYS[7] (the user's start rate, ARGV[15], ARGV[16]) a write with no live record
    /// before it also counts as a fresh start. Nothing is counted unless it is written.
    /// KEYS: cell, due, user hash, parts, clear mark[, rate[, starts]]. ARGV: gender tag, user
    /// id, ticket, retention ms, cell id, field, record without `purge_at`, partition id,
    /// partition resolution, fence mark, fence read at[, interval, tolerance, near cells[,
    /// start interval, start tolerance]].
    /// Returns `{1, last_active, purge_at}`, `{0, wait ms, 0}` (the rate refused),
    /// `{2, now, previous record}` (check the jump), `{3, wait ms, 0}` (the start rate
    /// refused) or `{4, 0, 0}` (fenced).
    UPSERT, limited_record_script, "lua/upsert.lua"
}

/// [`UPSERT`] of `position` with the user's update rate and jump check (`limits`).
pub fn upsert_limited(
    position: &Position,
    ticket: u64,
    retention: Retention,
    limits: &crate::storage::UpdateLimits,
    fence: Fence,
) -> ScriptInvocation<'static> {
    let mut call = upsert(position, ticket, retention, fence);
    let near: Vec<u8> = limits
        .near
        .as_deref()
        .into_iter()
        .flatten()
        .flat_map(|cell| u64::from(*cell).to_be_bytes())
        .collect();
    call.key(keys::limit_key(&LimitKey::Updates(
        position.user_id.clone(),
    )))
    .arg(limits.rate.interval_us())
    .arg(limits.rate.tolerance_us())
    .arg(near);
    if let Some(starts) = limits.starts {
        call.key(keys::limit_key(&LimitKey::Starts(position.user_id.clone())))
            .arg(starts.interval_us())
            .arg(starts.tolerance_us());
    }
    call
}

/// [`UPSERT`] of `position`, its user under `ticket`, admitted under `fence`.
pub fn upsert(
    position: &Position,
    ticket: u64,
    retention: Retention,
    fence: Fence,
) -> ScriptInvocation<'static> {
    let part = keys::partition(position.cell);
    let mut call = UPSERT.prepare_invoke();
    call.key(keys::cell_key(position.cell))
        .key(keys::due_key(part))
        .key(keys::user_key(&position.user_id))
        .key(keys::PARTS)
        .key(keys::clear_mark_key(&position.user_id))
        .arg(keys::gender_tag(position.gender).to_string())
        .arg(position.user_id.as_str())
        .arg(ticket)
        .arg(retention.window().as_millis() as u64)
        .arg(position.cell.to_string())
        .arg(keys::user_field(position.feature, &position.user_id))
        .arg(keys::record_without_deadline(position, retention))
        .arg(part.to_string())
        .arg(u8::from(keys::PARTITION_RES))
        .arg(fence.mark)
        .arg(fence.read_at.as_millis());
    call
}

lua_script! {
    /// LeaveNearby on a single node, in one atomic call: if the user has a live record, renews
    /// their member (found by ticket) and their record with `purge_at = now + retention`, marks
    /// the record left, and schedules the partition's sweep. Creates nothing when there is no
    /// live record, so a Leave can never bring back what a Clear or a withdrawal removed.
    /// KEYS: user hash, parts. ARGV: field, user id, ticket, retention ms, partition resolution.
    /// Returns `{last_active, purge_at}`, or nil when the user is not in the
    /// feature.
    LEAVE, record_script, "lua/leave.lua"
}

/// [`LEAVE`] of `user` in `feature`, under `ticket`.
pub fn leave(
    feature: Feature,
    user: &UserId,
    ticket: u64,
    retention: Retention,
) -> ScriptInvocation<'static> {
    let mut call = LEAVE.prepare_invoke();
    call.key(keys::user_key(user))
        .key(keys::PARTS)
        .arg(keys::user_field(feature, user))
        .arg(user.as_str())
        .arg(ticket)
        .arg(retention.window().as_millis() as u64)
        .arg(u8::from(keys::PARTITION_RES));
    call
}

lua_script! {
    /// ClearLocation of one feature on a single node, in one atomic call: sets the user's clear
    /// mark when given one (People Nearby), then deletes the user's record and every member of
    /// theirs in the record's cell (found by ticket, whatever deadline it carries).
    /// KEYS: user hash[, clear mark]. ARGV: field, user id, ticket, partition resolution.
    /// Returns 1 when there was a record, else 0.
    CLEAR, record_script, "lua/clear.lua"
}

/// [`CLEAR`] of `user` in `feature`, under `ticket`; People Nearby's sets the clear mark.
pub fn clear(feature: Feature, user: &UserId, ticket: u64) -> ScriptInvocation<'static> {
    let mut call = CLEAR.prepare_invoke();
    call.key(keys::user_key(user));
    if feature == Feature::PeopleNearby {
        call.key(keys::clear_mark_key(user));
    }
    call.arg(keys::user_field(feature, user))
        .arg(user.as_str())
        .arg(ticket)
        .arg(u8::from(keys::PARTITION_RES));
    call
}

lua_script! {
    /// Marks a user's record left with a new `purge_at`, only if the record is there and still
    /// in the cell whose member was renewed: the cluster's second step of LeaveNearby.
    /// KEYS: user hash. ARGV: field, cell (8 raw bytes), purge_at ms, retention ms. Returns 1
    /// when written, else 0.
    USER_LEAVE, record_script, "lua/user_leave.lua"
}

/// [`USER_LEAVE`] of `user`'s record in `feature`, if it still names `cell`.
pub fn user_leave(
    feature: Feature,
    user: &UserId,
    cell: CellIndex,
    purge_at: Timestamp,
    retention: Retention,
) -> ScriptInvocation<'static> {
    let mut call = USER_LEAVE.prepare_invoke();
    call.key(keys::user_key(user))
        .arg(keys::user_field(feature, user))
        .arg(u64::from(cell).to_be_bytes().as_slice())
        .arg(purge_at.as_millis())
        .arg(retention.window().as_millis() as u64);
    call
}

lua_script! {
    /// Deletes a user's record only if it still holds exactly ARGV[2]: an UpdateLocation
    /// whose member a concurrent Clear took takes back the record it wrote after that Clear,
    /// and nothing a later write put there. KEYS: user hash. ARGV: field, record. Returns 1
    /// when deleted, else 0.
    USER_DROP_IF, script, "lua/user_drop_if.lua"
}

/// [`USER_DROP_IF`] of `position`'s record if it is still the one written with `deadlines`.
pub fn user_drop_if(position: &Position, deadlines: &Deadlines) -> ScriptInvocation<'static> {
    let mut call = on_record(&USER_DROP_IF, position.feature, &position.user_id);
    call.arg(keys::encode_record(position, deadlines, false));
    call
}

lua_script! {
    /// Deletes a user's record and their strays and returns both (each or nil): the
    /// cluster's last step of a Clear, which then removes the members of every cell they name.
    /// Sets the clear mark first when given one (People Nearby), record or not.
    /// KEYS: user hash[, clear mark]. ARGV: field, strays field.
    USER_TAKE, fence_script, "lua/user_take.lua"
}

lua_script! {
    /// Reads a user shard's clear mark with the store's time, routed by the mark's key (a
    /// cluster's keyless `TIME` would go to any node). KEYS: clear mark.
    /// Returns `{now ms, mark or nil}`.
    FENCE_READ, fence_script, "lua/fence_read.lua"
}

/// [`FENCE_READ`] of `user`'s clear mark.
pub fn fence_read(user: &UserId) -> ScriptInvocation<'static> {
    FENCE_READ.key(keys::clear_mark_key(user))
}

/// [`USER_TAKE`] of `user`'s record and strays in `feature`.
pub fn user_take(feature: Feature, user: &UserId) -> ScriptInvocation<'static> {
    let mut call = on_record(&USER_TAKE, feature, user);
    call.arg(keys::strays_field(feature, user));
    if feature == Feature::PeopleNearby {
        call.key(keys::clear_mark_key(user));
    }
    call
}

lua_script! {
    /// The cluster's first step of UpdateLocation: lists the cell it is about to add a member
    /// to among the user's strays (for `hold`, rounded up to the second as [`CELL_ADD`] holds
    /// the member), so a Clear finds that member whichever later step is cut off. Refused
    /// when the strays are full (unfinished writes: the caller drops them first), and, changing
    /// nothing, when the fence no longer holds.
    /// KEYS: user hash, clear mark. ARGV: strays field, cell (8 raw bytes), hold ms, fence mark,
    /// fence read at (ms). Returns 1 when listed, 0 when full, -1 when fenced.
    USER_MARK, record_script, "lua/user_mark.lua"
}

/// [`USER_MARK`] of `position`'s cell, held for `hold`, admitted under `fence`.
pub fn user_mark(position: &Position, hold: Duration, fence: Fence) -> ScriptInvocation<'static> {
    let mut call = USER_MARK.prepare_invoke();
    call.key(keys::user_key(&position.user_id))
        .key(keys::clear_mark_key(&position.user_id))
        .arg(keys::strays_field(position.feature, &position.user_id))
        .arg(u64::from(position.cell).to_be_bytes().as_slice())
        .arg(hold.as_millis() as u64)
        .arg(fence.mark)
        .arg(fence.read_at.as_millis());
    call
}

lua_script! {
    /// The cluster's last step of UpdateLocation: takes `cells` off the user's strays once
    /// their members are dropped or confirmed (the record names the confirmed one).
    /// KEYS: user hash. ARGV: strays field, cells (8 raw bytes each). Returns how many are left.
    USER_UNMARK, record_script, "lua/user_unmark.lua"
}

/// [`USER_UNMARK`] of `cells` from `user`'s strays in `feature`.
pub fn user_unmark(
    feature: Feature,
    user: &UserId,
    cells: &[CellIndex],
) -> ScriptInvocation<'static> {
    let mut call = USER_UNMARK.prepare_invoke();
    call.key(keys::user_key(user))
        .arg(keys::strays_field(feature, user));
    for cell in cells {
        call.arg(u64::from(*cell).to_be_bytes().as_slice());
    }
    call
}

lua_script! {
    /// Writes a user's record and returns the previous one (or nil); when the previous one
    /// named another cell, that cell joins the user's strays until its member is dropped.
    /// Changes nothing and returns -1 when the fence no longer holds.
    /// KEYS: user hash, clear mark. ARGV: field, record, purge_at ms, strays field, fence mark,
    /// fence read at (ms).
    USER_PUT, record_script, "lua/user_put.lua"
}

/// [`USER_PUT`] of `position`'s record with `deadlines`.
pub fn user_put(
    position: &Position,
    deadlines: &Deadlines,
    left: bool,
    fence: Fence,
) -> ScriptInvocation<'static> {
    let mut call = USER_PUT.prepare_invoke();
    call.key(keys::user_key(&position.user_id))
        .key(keys::clear_mark_key(&position.user_id))
        .arg(keys::user_field(position.feature, &position.user_id))
        .arg(keys::encode_record(position, deadlines, left))
        .arg(deadlines.purge_at.as_millis())
        .arg(keys::strays_field(position.feature, &position.user_id))
        .arg(fence.mark)
        .arg(fence.read_at.as_millis());
    call
}

lua_script! {
    /// Reads a user's record with the server time: `{now, record or nil}` (on a cluster, where
    /// `TIME` sent alone could reach another node).
    /// KEYS: user hash. ARGV: field.
    USER_GET, script, "lua/user_get.lua"
}

/// [`USER_GET`] of `user`'s record in `feature`.
pub fn user_get(feature: Feature, user: &UserId) -> ScriptInvocation<'static> {
    on_record(&USER_GET, feature, user)
}

lua_script! {
    /// Deletes every record and strays field of a user hash whose deadline (floored to whole
    /// seconds) has passed, whether or not a cell member still points at it: a shard's visit
    /// (scheduled by a cluster write, `WRITE_SCHEDULE`) and the sweep's safety net. KEYS: user
    /// hash. Returns `{records deleted, the cut (ms), the earliest deadline left or -1}`.
    USER_SWEEP, record_script, "lua/user_sweep.lua"
}

/// [`USER_SWEEP`] of user hash `shard`.
pub fn user_sweep(shard: u64) -> ScriptInvocation<'static> {
    let mut call = USER_SWEEP.prepare_invoke();
    call.key(keys::shard_key(shard % keys::USER_SHARDS));
    call
}

lua_script! {
    /// Deletes the records and strays among ARGV[2..] whose deadline (the first 13 bytes,
    /// decimal ms, floored to whole seconds like the members') is at or before ARGV[1].
    /// KEYS: user hash. Returns how many records were deleted.
    USER_PURGE, record_script, "lua/user_purge.lua"
}

/// [`USER_PURGE`] of `fields` of user hash `key`, those due at `cut`.
pub fn user_purge(key: &str, cut: i64, fields: &[String]) -> ScriptInvocation<'static> {
    let mut call = USER_PURGE.prepare_invoke();
    call.key(key).arg(cut);
    for field in fields {
        call.arg(field);
    }
    call
}

lua_script! {
    /// Schedules a partition's next sweep no later than ARGV[1] (ZADD LT), and keeps the
    /// partitions index alive. KEYS: parts. ARGV: at, partition, ttl-at.
    PART_SCHEDULE, script, "lua/part_schedule.lua"
}

/// [`PART_SCHEDULE`]: `cell`'s partition swept at `at` (the TTL of the schedule one
/// retention later).
pub fn part_schedule(
    cell: CellIndex,
    at: Timestamp,
    retention: Retention,
) -> ScriptInvocation<'static> {
    let mut call = PART_SCHEDULE.prepare_invoke();
    call.key(keys::PARTS)
        .arg(at.as_millis())
        .arg(keys::partition(cell).to_string())
        .arg(at.plus(retention.window()).as_millis());
    call
}

lua_script! {
    /// The first step of a cluster UpdateLocation, before anything of it is written: the sweep
    /// visits the cell's partition no later than ARGV[1] and the user's record shard no later
    /// than ARGV[3] (ZADD LT each), so whatever a later step leaves when the call is cut off
    /// (a member held, a record, strays) is visited at its deadline; a visit that finds
    /// nothing due yet schedules the next at the earliest deadline it found (`sweep.rs`).
    /// KEYS: parts, shards. ARGV: partition's time, partition, shard's time, shard entry,
    /// ttl-at.
    WRITE_SCHEDULE, script, "lua/write_schedule.lua"
}

/// [`WRITE_SCHEDULE`] of a write of `position`: its partition visited at `part_at`, the
/// user's record shard at `shard_at` (the schedule's TTL one retention after the later).
pub fn write_schedule(
    position: &Position,
    part_at: Timestamp,
    shard_at: Timestamp,
    retention: Retention,
) -> ScriptInvocation<'static> {
    let mut call = WRITE_SCHEDULE.prepare_invoke();
    call.key(keys::PARTS)
        .key(keys::SHARDS)
        .arg(part_at.as_millis())
        .arg(keys::partition(position.cell).to_string())
        .arg(shard_at.as_millis())
        .arg(keys::shard_entry(&position.user_id))
        .arg(part_at.max(shard_at).plus(retention.window()).as_millis());
    call
}

lua_script! {
    /// Sets a partition's or a record shard's next sweep time after sweeping it (plain ZADD:
    /// see `sweep.rs`). KEYS: parts or shards. ARGV: at, partition or shard entry, ttl-at.
    PART_RESCHEDULE, script, "lua/part_reschedule.lua"
}

/// [`PART_RESCHEDULE`] of partition `part` at `at`, the schedule's TTL at `ttl_at`.
pub fn part_reschedule(
    schedule: &str,
    entry: &str,
    at: i64,
    ttl_at: i64,
) -> ScriptInvocation<'static> {
    let mut call = PART_RESCHEDULE.prepare_invoke();
    call.key(schedule).arg(at).arg(entry).arg(ttl_at);
    call
}
