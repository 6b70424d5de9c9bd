//! The scripts of the consent store: history, purges owed, erasure.

use super::*;

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
