//! The scripts of cell sets: a cluster update's cell steps, the cells a list reads, and the sweep of due cells.

use super::*;

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
