//! The scripts of the abuse limits: rates (GCRA) and held places.

use super::*;

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

/// [`LIMIT_ADMIT_HOLD`] of a [`Holding`].
pub fn limit_admit_hold(holding: &Holding<'_>) -> ScriptInvocation<'static> {
    let mut call = LIMIT_ADMIT_HOLD.key(keys::limit_key(holding.key));
    call.arg(holding.rate.interval_us())
        .arg(holding.rate.tolerance_us())
        .arg(holding.token)
        .arg(holding.hold.as_millis() as u64);
    for (place, cap) in holding.places {
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
