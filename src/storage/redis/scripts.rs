//! Every Lua script the Redis store runs: the Lua is in `lua/*.lua` (helpers shared by several
//! scripts in `lua/lib/`, checked by `luacheck` in the test suite), joined here with
//! `include_str!` behind a prelude of constants generated from `keys` and this module (key
//! prefixes, grace periods, record lengths), so the key layout is written in one place. Each
//! script's KEYS/ARGV contract is the doc comment of its static here.
//!
//! Each script takes time from the Redis server (`TIME`), so all service nodes agree on
//! deadlines whatever their own clocks say. Scripts that a cluster runs touch keys of one
//! hash tag only (one slot); [`UPSERT`] and [`CELLS_READ`] over several partitions run on a
//! single node only, which allows it.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use h3o::CellIndex;
use redis::{Script, ScriptInvocation};

use super::keys;
use crate::{
    domain::{
        ConsentEvent, Deadlines, Feature, Retention, Timestamp, UserId,
        limits::Rate,
        nearby::{NearbyQuery, Pseudonyms},
        shake::{self, PendingShake, ShakeMatch},
        user::GenderFilter,
    },
    storage::{CLEAR_MARK_TTL, FENCE_LIFETIME, Fence, LimitKey, LocationEntry, Position},
};

/// How long past its deadline a key's TTL falls (see [`EXPIRE_AT`]).
pub const TTL_GRACE: Duration = Duration::from_secs(30);
/// How long a pairing waits in its mailbox for the pending side to collect it.
pub const UNCOLLECTED: Duration = Duration::from_secs(10);
/// Expired pending shakes, and uncollected mailboxes, removed per Shake sweep call (each).
pub const SHAKE_SWEEP_BATCH: usize = 1_000;

/// `pub static $name`: the script of `lua/$file` behind the helpers `$joined` adds (built
/// once, on first use).
macro_rules! lua_script {
    ($(#[$doc:meta])* $name:ident, $joined:ident, $file:literal) => {
        $(#[$doc])*
        pub static $name: LazyLock<Script> = LazyLock::new(|| $joined(include_str!($file)));
    };
}

/// The constants every script starts with (names in `lua/.luacheckrc`).
fn constants() -> String {
    format!(
        "local CELL_KEY_HEAD, CELL_KEY_MID, DUE_KEY_TAIL = '{}', '{}', '{}'\n\
         local SHAKE_PREFIX, WAKE_PREFIX = '{}', '{}'\n\
         local TTL_GRACE_MS, UNCOLLECTED_MS, SHAKE_SWEEP_BATCH = {}, {}, {}\n\
         local RECORD_LEN, LEGACY_RECORD_LEN, STRAYS_CAP = {}, {}, {}\n\
         local ORDER_SPACE, CLEAR_MARK_TTL_MS, FENCE_LIFETIME_MS = {}, {}, {}\n",
        keys::CELL_KEY_HEAD,
        keys::CELL_KEY_MID,
        keys::DUE_KEY_TAIL,
        keys::SHAKE_PREFIX,
        keys::WAKE_PREFIX,
        TTL_GRACE.as_millis(),
        UNCOLLECTED.as_millis(),
        SHAKE_SWEEP_BATCH,
        keys::RECORD_LEN,
        keys::LEGACY_RECORD_LEN,
        keys::STRAYS_CAP,
        crate::domain::nearby::ORDER_SPACE,
        CLEAR_MARK_TTL.as_millis(),
        FENCE_LIFETIME.as_millis(),
    )
}

/// A script of `parts` joined behind [`constants`], its body kept for [`body_of`].
fn joined(parts: &[&str]) -> Script {
    let body = constants() + &parts.concat();
    let script = Script::new(&body);
    let mut bodies = BODIES.lock().unwrap_or_else(|p| p.into_inner());
    bodies.insert(script.get_hash().to_owned(), Arc::from(body));
    script
}

/// Every script's body by its SHA1 (scripts are built once each, on first use).
static BODIES: LazyLock<Mutex<HashMap<String, Arc<str>>>> = LazyLock::new(Mutex::default);

/// The body of the script whose SHA1 is `hash` (hex), when it is one of these: what a node
/// that answers `NOSCRIPT` (restarted, or a replica promoted: Redis does not replicate its
/// script cache) is sent as an `EVAL` instead (`conn`).
pub fn body_of(hash: &[u8]) -> Option<Arc<str>> {
    let hash = std::str::from_utf8(hash).ok()?;
    let bodies = BODIES.lock().unwrap_or_else(|p| p.into_inner());
    bodies.get(hash).cloned()
}

/// Whether the script whose SHA1 is `hash` (hex) must have its writes held by replicas
/// before its reply counts, when replica acknowledgements are asked for
/// (`Conn::replicated_script`): every script but those that only read, and the sweep's,
/// whose deletions are safe to lose (a failover that loses one leaves the entry and its
/// schedule on the promoted replica, and the next pass deletes it again), so a sweep goes on
/// while a replica is away.
pub fn waits_for_replicas(hash: &[u8]) -> bool {
    static NO_WAIT: LazyLock<Vec<String>> = LazyLock::new(|| {
        [
            &CELLS_READ,
            &CELLS_READ_FILTERED,
            &FENCE_READ,
            &USER_GET,
            &SWEEP_FIND,
            &PURGES_OWED,
            &HISTORY_READ,
            &USER_SWEEP,
            &USER_PURGE,
            &SWEEP_CELLS,
            &PART_RESCHEDULE,
            &SHAKE_SWEEP,
        ]
        .into_iter()
        .map(|script| script.get_hash().to_owned())
        .collect()
    });
    !NO_WAIT.iter().any(|read| read.as_bytes() == hash)
}

/// The server clock read once per call (`time_now`, what `TIME` answered), in milliseconds as
/// `now` (and its integer text as `now_s`).
const NOW: &str = include_str!("lua/lib/now.lua");

/// Sets a key's TTL to `at` plus a grace unless it already lives longer (GT, then NX for a key
/// without a TTL). The grace matters: a script sees a key past its TTL as absent while Redis
/// may keep it in memory for minutes, so if the TTL fell on the deadline itself, the sweeper
/// would find nothing to delete and the data would linger. With the grace the sweeper deletes
/// at the deadline, and the TTL only acts when no service node runs at all.
const EXPIRE_AT: &str = include_str!("lua/lib/expire_at.lua");

/// Cell members: `<gender><deadline: 7 base-36 digits of whole seconds><user id>`.
const MEMBERS: &str = include_str!("lua/lib/members.lua");

fn script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, body])
}

/// The score ranges of a rotated window of the order (`lua/lib/ranges.lua`).
const RANGES: &str = include_str!("lua/lib/ranges.lua");

/// A cell-reading script: [`script`]'s helpers and the window's score ranges.
fn cells_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, RANGES, body])
}

/// Limit state: the server clock in µs, GCRA rates and capped places (`lua/lib/limits.lua`).
const LIMITS: &str = include_str!("lua/lib/limits.lua");

fn limit_script(body: &str) -> Script {
    joined(&[NOW, LIMITS, body])
}

lua_script! {
    /// The cluster's first step of UpdateLocation: adds (or renews) a user in a cell, replacing
    /// any member of the same user there (found by its ticket, without a scan). The deadlines
    /// it answers are `purge_at = now + retention` rounded down to the second (deadlines in
    /// members are whole seconds, so the replies say exactly when the data goes) and
    /// `last_active = purge_at - retention`, but the member itself is held only until
    /// `now + hold` (rounded up to the second) until [`CELL_CONFIRM`] gives it `purge_at`, so
    /// a node that dies between the steps leaves a member that stops counting within `hold`.
    /// KEYS: cell, due. ARGV: gender tag, user id, ticket, retention ms, cell id, hold ms.
    /// Returns `{last_active, purge_at}`.
    CELL_ADD, cell_script, "lua/cell_add.lua"
}

/// [`CELL_ADD`] for `position`'s user, under `ticket`, held for `hold` until confirmed.
pub fn cell_add(
    position: &Position,
    ticket: u64,
    retention: Retention,
    hold: Duration,
) -> ScriptInvocation<'static> {
    let mut call = on_member(&CELL_ADD, position, ticket);
    call.arg(retention.window().as_millis() as u64)
        .arg(position.cell.to_string())
        .arg(hold.as_millis() as u64);
    call
}

lua_script! {
    /// The cluster's last step of UpdateLocation: gives the user's member in the cell (found
    /// by ticket) its full deadline, only if it is still there (a Clear in between removed it
    /// for good). KEYS: cell, due. ARGV: gender tag, user id, ticket, purge_at ms, cell id.
    /// Returns 1 when confirmed, else 0.
    CELL_CONFIRM, cell_script, "lua/cell_confirm.lua"
}

/// [`CELL_CONFIRM`] of `position`'s member (under `ticket`) until `purge_at`.
pub fn cell_confirm(
    position: &Position,
    ticket: u64,
    purge_at: Timestamp,
) -> ScriptInvocation<'static> {
    let mut call = on_member(&CELL_CONFIRM, position, ticket);
    call.arg(purge_at.as_millis())
        .arg(position.cell.to_string());
    call
}

/// H3 on raw cells inside a script: the key text of an 8-byte big-endian cell (h3o's
/// lower-case hex, no leading zeros) and its parent at a resolution (resolution field set,
/// finer digits set to 7, as H3 defines it).
pub(super) const CELLS: &str = include_str!("lua/lib/cells.lua");

/// Cell-set steps shared by the scripts that write cells: a user's members found by their
/// ticket (no scan) are dropped, a cell left empty leaves its partition's due index, and a
/// member is added with the cell's due time and the TTLs pushed forward.
const CELL_OPS: &str = include_str!("lua/lib/cell_ops.lua");

/// A script that writes cells: [`script`]'s helpers plus [`CELLS`] and [`CELL_OPS`].
fn cell_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, CELLS, CELL_OPS, body])
}

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

/// [`record_script`] with the limit helpers.
fn limited_record_script(body: &str) -> Script {
    joined(&[RECORD_LIBS, &[LIMITS, body]].concat())
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

/// Where a user's record says their cell set and its due index are (single node only: the
/// keys are derived, not declared). `rec` is a record (`keys::encode_record`), `res` the
/// partition resolution. Returns the cell key, the due key and the cell id.
const RECORD_CELL: &str = include_str!("lua/lib/record_cell.lua");

/// A user's strays beside their record (cluster only; `lua/lib/strays.lua`, the key table in
/// [`keys`]).
const STRAYS: &str = include_str!("lua/lib/strays.lua");

/// A script that reads cells from records: [`cell_script`] plus [`RECORD_CELL`], with the
/// record lengths of `keys` (a record of the earlier layout is read too, and rewritten in the
/// current one: see `keys`).
fn record_script(body: &str) -> Script {
    joined(&[RECORD_LIBS, &[body]].concat())
}

/// The helpers of [`record_script`].
const RECORD_LIBS: &[&str] = &[
    NOW,
    EXPIRE_AT,
    MEMBERS,
    CELLS,
    CELL_OPS,
    RECORD_CELL,
    STRAYS,
    FENCE,
];

/// Marks: set by a clear (a clear mark, a Shake tombstone), compared by a fenced write
/// (`lua/lib/fence.lua`).
const FENCE: &str = include_str!("lua/lib/fence.lua");

/// A script that sets or compares clear marks: [`script`]'s helpers and [`FENCE`].
fn fence_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, FENCE, body])
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
    /// Renews a user's member in a cell, found by ticket or as their record names it, only if one
    /// is there: the cluster's first step of LeaveNearby, which must not re-create a member a
    /// Clear removed. KEYS: cell, due. ARGV: gender tag, user id, ticket, retention ms, cell id,
    /// the member the record names.
    /// Returns `{last_active, purge_at}`, or nil when the user has no member there.
    CELL_RENEW, cell_script, "lua/cell_renew.lua"
}

/// [`CELL_RENEW`] of the member of `entry` (its user under `ticket`).
pub fn cell_renew(
    entry: &LocationEntry,
    ticket: u64,
    retention: Retention,
) -> ScriptInvocation<'static> {
    let mut call = on_member(&CELL_RENEW, &entry.position, ticket);
    call.arg(retention.window().as_millis() as u64)
        .arg(entry.position.cell.to_string())
        .arg(named_member(entry));
    call
}

lua_script! {
    /// Removes every member of a user from a cell (found by ticket, and by name the members
    /// ARGV[4..] their record says may be there, which a node with another order secret wrote
    /// under another ticket), dropping the cell when empty. KEYS: cell, due. ARGV: user id,
    /// ticket, cell id, members (none or more). Returns 1.
    CELL_DROP_USER, cell_script, "lua/cell_drop_user.lua"
}

/// [`CELL_DROP_USER`] in `cell`: every member of `user` under `ticket` (a stray, which no
/// record names).
pub fn cell_drop_ticket(cell: CellIndex, user: &UserId, ticket: u64) -> ScriptInvocation<'static> {
    let mut call = on_cell(&CELL_DROP_USER, cell);
    call.arg(user.as_str()).arg(ticket).arg(cell.to_string());
    call
}

/// [`CELL_DROP_USER`]: every member of the user of `entry` (under `ticket`, and by name: the
/// member `entry` names and the ones its write held before its last step, see
/// [`held_members`]).
pub fn cell_drop_user(
    entry: &LocationEntry,
    ticket: u64,
    hold: Duration,
) -> ScriptInvocation<'static> {
    let (cell, user) = (entry.position.cell, &entry.position.user_id);
    let mut call = on_cell(&CELL_DROP_USER, cell);
    call.arg(user.as_str())
        .arg(ticket)
        .arg(cell.to_string())
        .arg(named_member(entry));
    for held in held_members(entry, hold) {
        call.arg(held);
    }
    call
}

/// The names the member of a cluster UpdateLocation whose record is `entry` can have before
/// its last step confirms it ([`CELL_ADD`] holds it until `now + hold`, rounded up to a
/// second, with `purge_at` = `now + retention` rounded down, so `now` lies in the second
/// from `last_active` on, and the hold's end in one of two seconds). A node whose order
/// secret differs from the writer's finds that member by these names alone, so a newer
/// update or a Clear takes it before the writer confirms it (the confirm then fails),
/// instead of missing it and leaving it confirmed where no record names it.
fn held_members(entry: &LocationEntry, hold: Duration) -> impl Iterator<Item = String> + '_ {
    let purge = entry.deadlines.purge_at.as_millis();
    let earliest = entry.deadlines.last_active.as_millis() + hold.as_millis() as i64;
    let first = (earliest + 999).div_euclid(1000) * 1000;
    [first, first + 1000]
        .into_iter()
        .map(move |end| end.min(purge))
        .filter(move |end| *end != purge)
        .map(|end| {
            keys::member(
                entry.position.gender,
                Timestamp::from_millis(end),
                &entry.position.user_id,
            )
        })
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

/// A call of `script` whose KEYS are `cell`'s member set and its partition's due index.
fn on_cell(script: &'static Script, cell: CellIndex) -> ScriptInvocation<'static> {
    let mut call = script.prepare_invoke();
    call.key(keys::cell_key(cell))
        .key(keys::due_key(keys::partition(cell)));
    call
}

/// A call of `script` on `position`'s cell whose ARGV start with the member's parts: gender
/// tag, user id, `ticket`.
fn on_member(
    script: &'static Script,
    position: &Position,
    ticket: u64,
) -> ScriptInvocation<'static> {
    let mut call = on_cell(script, position.cell);
    call.arg(keys::gender_tag(position.gender).to_string())
        .arg(position.user_id.as_str())
        .arg(ticket);
    call
}

/// The member `entry` names in its cell (as the node that wrote it spelled it).
fn named_member(entry: &LocationEntry) -> String {
    keys::member(
        entry.position.gender,
        entry.deadlines.purge_at,
        &entry.position.user_id,
    )
}

/// A call of `script` whose KEYS are `user`'s hash and whose ARGV is their field in `feature`.
fn on_record(
    script: &'static Script,
    feature: Feature,
    user: &UserId,
) -> ScriptInvocation<'static> {
    let mut call = script.prepare_invoke();
    call.key(keys::user_key(user))
        .arg(keys::user_field(feature, user));
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
    /// Counts one call against a rate (GCRA) or refuses it, changing nothing; admitted, it
    /// also reads a record when given one (one node only: the keys' slots differ).
    /// KEYS: the limit's key[, a user hash]. ARGV: interval µs, tolerance µs (interval ×
    /// burst)[, the record's field]. Returns `{1, now ms, record or nil}` when admitted,
    /// `{0, wait ms, nil}` when refused.
    LIMIT_ADMIT, limit_script, "lua/limit_admit.lua"
}

/// [`LIMIT_ADMIT`] of `rate` under `key`.
pub fn limit_admit(key: &LimitKey, rate: Rate) -> ScriptInvocation<'static> {
    let mut call = LIMIT_ADMIT.key(keys::limit_key(key));
    call.arg(rate.interval_us()).arg(rate.tolerance_us());
    call
}

/// [`LIMIT_ADMIT`] of `rate` under `key`, reading `user`'s record in `feature` if admitted.
pub fn limit_admit_reading(
    key: &LimitKey,
    rate: Rate,
    feature: Feature,
    user: &UserId,
) -> ScriptInvocation<'static> {
    let mut call = limit_admit(key, rate);
    call.key(keys::user_key(user))
        .arg(keys::user_field(feature, user));
    call
}

lua_script! {
    /// Counts one call against a rate and takes a place under each of the other keys for a
    /// token, all or nothing (one slot: on a cluster, keys of one hash tag only).
    /// KEYS: the rate's key, the places' keys. ARGV: interval µs, tolerance µs, token, hold
    /// ms, then each place's cap. Returns `{1, 0, now ms}` when admitted, `{0, i, wait ms}`
    /// when refused by the rate (`i` = 0) or by the `i`-th place.
    LIMIT_ADMIT_HOLD, limit_script, "lua/limit_admit_hold.lua"
}

/// [`LIMIT_ADMIT_HOLD`] of `rate` under `key` and a place under each of `places` (key, cap)
/// for `token`, for `hold`.
pub fn limit_admit_hold(
    key: &LimitKey,
    rate: Rate,
    places: &[(LimitKey, u32)],
    token: u64,
    hold: Duration,
) -> ScriptInvocation<'static> {
    let mut call = LIMIT_ADMIT_HOLD.key(keys::limit_key(key));
    call.arg(rate.interval_us())
        .arg(rate.tolerance_us())
        .arg(token)
        .arg(hold.as_millis() as u64);
    for (place, cap) in places {
        call.key(keys::limit_key(place)).arg(*cap);
    }
    call
}

lua_script! {
    /// Takes one of `cap` places for a token until `now + hold`, or refuses, changing nothing.
    /// KEYS: the limit's key. ARGV: token, cap, hold ms.
    /// Returns `{1, now}` when taken, `{0, wait ms}` (until the first place ends) when refused.
    HOLD_TAKE, limit_script, "lua/hold_take.lua"
}

/// [`HOLD_TAKE`] of one of `cap` places under `key` for `token`, for `hold`.
pub fn hold_take(
    key: &LimitKey,
    token: u64,
    cap: u32,
    hold: Duration,
) -> ScriptInvocation<'static> {
    let mut call = HOLD_TAKE.key(keys::limit_key(key));
    call.arg(token).arg(cap).arg(hold.as_millis() as u64);
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
    /// Reads cells in the viewer's in-band order and only as far as the page needs.
    /// KEYS: cells sorted by band: of one partition on a cluster, of any partitions on a single
    /// node (which allows a script keys of several slots). ARGV: n (members wanted), offset (the
    /// order's rotation), cursor band (-1 for none), cursor key, gender char ('' for any), viewer,
    /// k, then k excluded users, then one band per key.
    ///
    /// A member's key is (ticket - offset) mod 2^52: each cell's members come in that order
    /// from `ZRANGEBYSCORE` (one or two ranges around the rotation). The script reads band by
    /// band what is still wanted (the page, the viewer and the block list): a band of one cell
    /// (the viewer's own, mostly) with `… LIMIT` up to that many in order, or whole with one
    /// `ZRANGE` when it holds fewer; a band of several cells (a ring) through one window of
    /// the key space sized from their total (`ZCARD`) to hold a quarter more than is wanted,
    /// doubling only when it falls short, or every cell whole when the total is no more (a
    /// window's score ranges formatted once for all its cells: formatting a number costs
    /// about what reading an empty cell does). No
    /// per-member Lua: each read goes back as one '\n'-joined string, untouched; the caller
    /// filters (viewer, block list, deadline) and ranks. The count is of raw members, so the
    /// script says where the last band it read is complete (after the last member of a cut
    /// cell, one `ZSCORE`; a window's end; the end of the band when later keys were left
    /// unread), and the page ends there if its filters left it short (the next page continues
    /// from it). Work and reply are thus bounded by the page, not the density.
    /// One call examines at most about `20n + 2000` members: past that it stops between bands
    /// (at the end of the band before, key 2^52) and says so.
    /// Returns `{now, stop band, stop key, i1, 'member\nmember...', i2, ...}`, stop band -1 when
    /// it read every key to the end, `i` the 1-based key index.
    CELLS_READ, cells_script, "lua/cells_read.lua"
}

lua_script! {
    /// [`CELLS_READ`] under a gender filter, where most members of a crowd may be of the
    /// other gender: members are admitted here, one by one, so the count is exact.
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
    CELLS_READ_FILTERED, cells_script, "lua/cells_read_filtered.lua"
}

/// [`CELLS_READ`] of `cells` (each with its band) for `query`.
pub fn cells_read(query: &NearbyQuery, cells: &[(CellIndex, u32)]) -> ScriptInvocation<'static> {
    let (after_band, after_key) = query
        .after
        .as_ref()
        .map_or((-1, 0), |c| (i64::from(c.band_m), c.key));
    let script = match query.gender_filter {
        GenderFilter::Any => &CELLS_READ,
        _ => &CELLS_READ_FILTERED,
    };
    let mut call = script.prepare_invoke();
    call.arg(query.limit + 1)
        .arg(query.order.offset())
        .arg(after_band)
        .arg(after_key)
        .arg(keys::gender_filter_tag(query.gender_filter))
        .arg(query.viewer.as_str())
        .arg(query.exclude.len());
    for user in &query.exclude {
        call.arg(user.as_str());
    }
    for (cell, band) in cells {
        call.key(keys::cell_key(*cell)).arg(*band);
    }
    call
}

lua_script! {
    /// Lists the members of a partition due at the server's now: `{cut, {cell, ...}, {member,
    /// ...}}`, cut = now floored to the second, the cells those members were read from (at most
    /// ARGV[2] cells, and no more cells once ARGV[3] members were examined, but always one), and
    /// their due members. [`SWEEP_CELLS`] then sweeps exactly these cells: a cell whose members
    /// were not read here keeps them, so no record is ever left without its member.
    /// KEYS: due. ARGV: cell key prefix, cell limit, member budget.
    SWEEP_FIND, script, "lua/sweep_find.lua"
}

/// [`SWEEP_FIND`] in partition `part`: at most `cells` cells, `members` members examined.
pub fn sweep_find(part: CellIndex, cells: usize, members: usize) -> ScriptInvocation<'static> {
    let mut call = SWEEP_FIND.prepare_invoke();
    call.key(keys::due_key(part))
        .arg(keys::cell_prefix(part))
        .arg(cells)
        .arg(members);
    call
}

lua_script! {
    /// Removes the members due at ARGV[2] (the cut SWEEP_FIND returned, whose users' records are
    /// already deleted) from the cells SWEEP_FIND read (ARGV[3..]) and re-scores those cells;
    /// other due cells wait for the next visit. Returns the partition's earliest deadline left
    /// (at or before the cut when due cells remain), or nil when it is empty.
    /// KEYS: due. ARGV: cell key prefix, cut, cell, cell, ...
    SWEEP_CELLS, script, "lua/sweep_cells.lua"
}

/// [`SWEEP_CELLS`] of `cells` (as [`SWEEP_FIND`] named them) in partition `part` at `cut`.
pub fn sweep_cells(part: CellIndex, cut: i64, cells: &[String]) -> ScriptInvocation<'static> {
    let mut call = SWEEP_CELLS.prepare_invoke();
    call.key(keys::due_key(part))
        .arg(keys::cell_prefix(part))
        .arg(cut);
    for cell in cells {
        call.arg(cell);
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

lua_script! {
    /// Appends a consent event: the feature's state and the history in one step. Redis does not
    /// undo a script cut short, so the more restrictive write goes first: a withdrawal sets the
    /// state before its event, a grant appends its event before the state says `1`. Then, if the
    /// feature now has more than ARGV[4] events, its oldest one goes (`domain::consent::
    /// HISTORY_PER_FEATURE`; the history is at most that many per feature, so this reads a
    /// bounded list, and the latest event of each feature, its current record, always stays).
    /// KEYS: the feature's state key, history list. ARGV: encoded record, state (`1` granted,
    /// `0` not), the feature's tag (the record's second field), cap.
    CONSENT_APPEND, script, "lua/consent_append.lua"
}

/// [`CONSENT_APPEND`] of `event`, encoded as `record`, under the feature tag `tag`, keeping
/// at most `cap` events of the feature.
pub fn consent_append(
    event: &ConsentEvent,
    record: &str,
    tag: &str,
    cap: usize,
) -> ScriptInvocation<'static> {
    let state = if event.is_granted() { "1" } else { "0" };
    let mut call = CONSENT_APPEND.prepare_invoke();
    call.key(keys::consent_key(&event.user_id, tag))
        .key(keys::history_key(&event.user_id))
        .arg(record)
        .arg(state)
        .arg(tag)
        .arg(cap);
    call
}

lua_script! {
    /// Records an owed purge at the server's now. KEYS: owed. ARGV: member.
    PURGE_OWE, script, "lua/purge_owe.lua"
}

/// [`PURGE_OWE`] of the owed purge `member` (`consent::owed_member`).
pub fn purge_owe(member: &str) -> ScriptInvocation<'static> {
    let mut call = PURGE_OWE.prepare_invoke();
    call.key(keys::OWED).arg(member);
    call
}

lua_script! {
    /// Purges owed for at least ARGV[1] ms, oldest first, at most ARGV[2]. KEYS: owed.
    PURGES_OWED, script, "lua/purges_owed.lua"
}

/// [`PURGES_OWED`]: owed for at least `age`, at most `limit`.
pub fn purges_owed(age: Duration, limit: usize) -> ScriptInvocation<'static> {
    let mut call = PURGES_OWED.prepare_invoke();
    call.key(keys::OWED).arg(age.as_millis() as u64).arg(limit);
    call
}

lua_script! {
    /// Deletes a user's consent records; returns how many events there were.
    /// KEYS: history list, then every current record.
    CONSENT_FORGET, script, "lua/consent_forget.lua"
}

/// [`CONSENT_FORGET`] of `user`, whose features have the tags `tags`.
pub fn consent_forget(user: &UserId, tags: &[&str]) -> ScriptInvocation<'static> {
    let mut call = CONSENT_FORGET.prepare_invoke();
    call.key(keys::history_key(user));
    for tag in tags {
        call.key(keys::consent_key(user, tag));
    }
    call
}

/// Shake's key names inside scripts (every one under the `{shake}` hash tag) and the steps
/// several Shake scripts share: dropping a pending shake, and a user's history, "named by"
/// index and tombstone.
const SHAKE_OPS: &str = include_str!("lua/lib/shake_ops.lua");

/// A Shake script: [`script`]'s helpers plus [`SHAKE_OPS`] and [`FENCE`] (its tombstone is a
/// mark as a clear's is).
fn shake_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, SHAKE_OPS, FENCE, body])
}

lua_script! {
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
    /// ARGV[11] and ARGV[12] are the user's tombstone name and the clear mark the call read
    /// before its consent check (the rings follow from ARGV[13]): when the tombstone holds
    /// another mark, the user's Shake was cleared since (a withdrawal may have answered OK),
    /// and nothing is paired or left pending.
    /// Returns `{1, partner, partner cell, now}`, `{0, now, expires}` or `{2}` (cleared).
    SHAKE_PAIR, shake_script, "lua/shake_pair.lua"
}

/// [`SHAKE_PAIR`] of shake `id` of `user` in `cell`, waiting `window` on node `node`.
pub fn shake_pair(
    pseudonyms: &Pseudonyms,
    id: u64,
    user: &UserId,
    cell: CellIndex,
    window: Duration,
    node: &str,
    mark: i64,
) -> ScriptInvocation<'static> {
    let coarse = shake::coarse(cell);
    let (lat, lng) = shake::compared_centre(cell);
    let mut call = SHAKE_PAIR.prepare_invoke();
    call.key(keys::SHAKE_PENDING)
        .arg(format!("{id:x}"))
        .arg(user.as_str())
        .arg(cell.to_string())
        .arg(format!("{lat:.6}"))
        .arg(format!("{lng:.6}"))
        .arg(window.as_millis() as u64)
        .arg(node)
        .arg(coarse.to_string())
        .arg(shake::PER_COARSE_CELL)
        .arg(shake::FAR_POOL)
        .arg(keys::tombstone_name(pseudonyms, user))
        .arg(mark);
    for ring in shake::coarse_rings(coarse) {
        let ring: Vec<String> = ring.iter().map(ToString::to_string).collect();
        call.arg(ring.join("|"));
    }
    call
}

lua_script! {
    /// Takes a delivered pairing from a shake's mailbox; with ARGV[2] = '1' also withdraws the
    /// shake if it is still pending. ARGV: id, withdraw flag, user. Returns the pairing text or
    /// nil.
    SHAKE_TAKE, shake_script, "lua/shake_take.lua"
}

/// [`SHAKE_TAKE`] of `pending`'s pairing, withdrawing it too when `withdraw`.
pub fn shake_take(pending: &PendingShake, withdraw: bool) -> ScriptInvocation<'static> {
    let mut call = SHAKE_TAKE.prepare_invoke();
    call.key(keys::SHAKE_PENDING)
        .arg(format!("{:x}", pending.id))
        .arg(if withdraw { "1" } else { "0" })
        .arg(pending.user.as_str());
    call
}

lua_script! {
    /// Withdraws every pending shake of a user and, with ARGV[2] = '1' (a Clear, a withdrawal,
    /// an erasure), also deletes their uncollected pairings, their history, every entry naming
    /// them in others' histories (found through `n:<user>`), and leaves a tombstone so a match
    /// recorded later for or against them (by a call still finishing) is dropped.
    /// ARGV: user, clear flag, tombstone ms, tombstone name. Returns `{entries removed, last history deadline}`
    /// (the deadline 0 when there is no history or it was cleared).
    SHAKE_CLEAR_USER, shake_script, "lua/shake_clear_user.lua"
}

/// [`SHAKE_CLEAR_USER`] of `user`; with `clear` everything of theirs, tombstoned for
/// `tombstone`.
pub fn shake_clear_user(
    pseudonyms: &Pseudonyms,
    user: &UserId,
    clear: bool,
    tombstone: Duration,
) -> ScriptInvocation<'static> {
    let mut call = SHAKE_CLEAR_USER.prepare_invoke();
    call.key(keys::SHAKE_PENDING)
        .arg(user.as_str())
        .arg(if clear { "1" } else { "0" })
        .arg(tombstone.as_millis() as u64)
        .arg(keys::tombstone_name(pseudonyms, user));
    call
}

lua_script! {
    /// Removes expired pending shakes and uncollected mailboxes (at most 1,000 of each), and
    /// the expired history of at most ARGV[1] users due. Returns `{removed, users left due}`.
    SHAKE_SWEEP, shake_script, "lua/shake_sweep.lua"
}

/// [`SHAKE_SWEEP`], trimming the history of at most `users` users.
pub fn shake_sweep(users: usize) -> ScriptInvocation<'static> {
    let mut call = SHAKE_SWEEP.prepare_invoke();
    call.key(keys::SHAKE_PENDING).arg(users);
    call
}

lua_script! {
    /// Adds a match to a user's history (a sorted set of `partner|band|matched_at` by deadline,
    /// at most ARGV[6] entries: the oldest go first), indexes the user under the partner's
    /// "named by" set, and schedules both for the sweep; nothing is written when either side
    /// cleared Shake at or after the match (a tombstone), so a call that finishes late never
    /// brings a cleared pair back. ARGV: user, partner, matched_at ms, entry, deadline ms, cap,
    /// the user's and the partner's tombstone names. Returns 1 when written.
    HISTORY_ADD, shake_script, "lua/history_add.lua"
}

/// [`HISTORY_ADD`] of `matched` to `user`'s history, kept one `retention`, at most `cap`
/// entries.
pub fn history_add(
    pseudonyms: &Pseudonyms,
    user: &UserId,
    matched: &ShakeMatch,
    retention: Retention,
    cap: usize,
) -> ScriptInvocation<'static> {
    let deadline = matched.matched_at.plus(retention.window()).as_millis();
    let entry = format!(
        "{}|{}|{}",
        matched.partner,
        matched.band_m,
        matched.matched_at.as_millis()
    );
    let mut call = HISTORY_ADD.prepare_invoke();
    call.key(keys::SHAKE_PENDING)
        .arg(user.as_str())
        .arg(matched.partner.as_str())
        .arg(matched.matched_at.as_millis())
        .arg(entry)
        .arg(deadline)
        .arg(cap)
        .arg(keys::tombstone_name(pseudonyms, user))
        .arg(keys::tombstone_name(pseudonyms, &matched.partner));
    call
}

lua_script! {
    /// A user's unexpired history, oldest first, with the server time: `{now, entry, ...}`.
    /// ARGV: user.
    HISTORY_READ, shake_script, "lua/history_read.lua"
}

/// [`HISTORY_READ`] of `user`'s history.
pub fn history_read(user: &UserId) -> ScriptInvocation<'static> {
    let mut call = HISTORY_READ.prepare_invoke();
    call.key(keys::SHAKE_PENDING).arg(user.as_str());
    call
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::*;

    /// `luacheck` (Debian's `lua-check`, which `scripts/test` installs) over every Lua file,
    /// with `lua/.luacheckrc`: Lua 5.1 as Redis runs it, no global but Redis's own, the
    /// prelude's constants and the helpers, nothing unused.
    #[test]
    fn every_lua_file_passes_luacheck() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/redis/lua");
        let output = Command::new("luacheck")
            .args(["--no-color", "."])
            .current_dir(&dir)
            .output()
            .expect("luacheck runs (apt-get install lua-check; scripts/test installs it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// The key layout is written once: what the scripts are given is what `keys` builds.
    #[test]
    fn the_prelude_names_the_keys_as_keys_builds_them() {
        let part = h3o::LatLng::new(39.9, 116.4)
            .expect("valid")
            .to_cell(keys::PARTITION_RES);
        let prelude = constants();
        let cell_key = keys::cell_prefix(part);
        assert!(
            cell_key.starts_with(keys::CELL_KEY_HEAD) && cell_key.ends_with(keys::CELL_KEY_MID)
        );
        assert_eq!(
            keys::due_key(part),
            format!("{}{part}{}", keys::CELL_KEY_HEAD, keys::DUE_KEY_TAIL)
        );
        assert!(keys::SHAKE_PENDING.starts_with(keys::SHAKE_PREFIX));
        for constant in [keys::CELL_KEY_HEAD, keys::SHAKE_PREFIX, keys::WAKE_PREFIX] {
            assert!(prelude.contains(&format!("'{constant}'")), "{prelude}");
        }
        assert!(prelude.contains(&format!("= {}, ", TTL_GRACE.as_millis())));
        // The order space the cell reads rotate in is the domain's (`lua/lib/ranges.lua`).
        let order_space = crate::domain::nearby::ORDER_SPACE;
        let (ttl, lifetime) = (CLEAR_MARK_TTL.as_millis(), FENCE_LIFETIME.as_millis());
        assert!(prelude.contains(&format!(
            "local ORDER_SPACE, CLEAR_MARK_TTL_MS, FENCE_LIFETIME_MS = {order_space}, {ttl}, {lifetime}\n"
        )));
    }
}
