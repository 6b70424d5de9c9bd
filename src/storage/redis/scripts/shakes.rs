//! The scripts of Shake: pairing, pending shakes, history.

use super::*;

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

/// [`SHAKE_PAIR`] of a shake, waiting on node `node`.
pub fn shake_pair(
    pseudonyms: &Pseudonyms,
    shake: &NewShake<'_>,
    node: &str,
) -> ScriptInvocation<'static> {
    let NewShake {
        id,
        user,
        cell,
        window,
        mark,
    } = *shake;
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
