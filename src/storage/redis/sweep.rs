//! The sweeper: deletes location data at its deadline, explicitly, so purging does not wait
//! for Redis's sampling expiry (which can leave expired keys in memory for minutes). Safe to
//! run on any number of nodes at once: every step is idempotent.
//!
//! One pass: read the partitions due (`vc:n:parts`), and for each: list the members due in a
//! bounded number of due cells (SWEEP_FIND, which also fixes the cut-off time and names the
//! cells it read), delete their users' records if they are still due (USER_PURGE, per user
//! hash), then remove the members and re-score exactly those cells (SWEEP_CELLS, only up to
//! the cut-off, so no record is left without a member pointing at it), then schedule the
//! partition's next visit: at once when due cells remain, so a backlog of any size after a
//! stall drains at up to [`CELLS_PER_VISIT`] cells per partition per pass.
//!
//! Scheduling: the next visit is `min(earliest deadline left, cut + retention)`. A write that
//! races with the sweep can only add deadlines at or after `its now + retention`, so the
//! `cut + retention` cap keeps it covered (to within the write's own duration) even if the
//! plain ZADD here overwrites its `ZADD LT`. Every node must therefore use the same retention.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use h3o::CellIndex;

use super::{RedisStore, keys, scripts};
use crate::{
    domain::{Feature, Timestamp},
    storage::{Expired, StoreResult},
};

/// Partitions visited per pass.
const PARTS_PER_PASS: usize = 256;
/// Due cells read per partition visit.
const CELLS_PER_VISIT: usize = 1_000;
/// Members examined per partition visit before no further cell is read (one cell is always
/// read, however crowded): bounds one script's hold on the Redis thread.
const MEMBERS_PER_VISIT: usize = 20_000;

/// User-record hashes every pass also examines, whatever else is due: the safety net for a
/// record whose cell member is gone, so the sweep above cannot find it (a cell key that
/// expired while every node was down for longer than its 30 s grace). At 64 of the 16,384
/// shards a pass, each record is looked at within about 256 passes (4.3 minutes at the
/// default interval) of its deadline; all nodes take the same shards in the same second.
const SHARDS_PER_PASS: u64 = 64;

/// Runs one pass; returns what it purged.
pub(super) async fn sweep(store: &RedisStore) -> StoreResult<Expired> {
    let now = crate::storage::LocationStore::now(store).await?;
    let conn = &store.conn;
    let mut list = redis::cmd("ZRANGEBYSCORE");
    list.arg(keys::PARTS)
        .arg("-inf")
        .arg(now.as_millis())
        .arg("LIMIT")
        .arg(0)
        .arg(PARTS_PER_PASS);
    let due: Vec<String> = conn.query("listing due partitions", &list).await?;
    let shakes = super::shake::sweep(store).await?;
    let first = (now.as_millis().max(0) as u64 / 1000 * SHARDS_PER_PASS) % keys::USER_SHARDS;
    let strays = sweep_shards(store, first, SHARDS_PER_PASS).await?;
    let visits = due
        .iter()
        .filter_map(|p| p.parse::<CellIndex>().ok())
        .map(|p| visit(store, p));
    let mut expired = Expired::default();
    expired.add(shakes + strays, None);
    Ok(try_join_all(visits)
        .await?
        .into_iter()
        .fold(expired, Expired::merge))
}

/// Deletes the records past their deadline in `count` user shards from `first` on.
pub(super) async fn sweep_shards(store: &RedisStore, first: u64, count: u64) -> StoreResult<u32> {
    let calls = (first..first + count).map(|shard| async move {
        let conn = &store.conn;
        conn.script::<u32>("sweeping records", &scripts::user_sweep(shard))
            .await
    });
    Ok(try_join_all(calls).await?.into_iter().sum())
}

async fn visit(store: &RedisStore, part: CellIndex) -> StoreResult<Expired> {
    let conn = &store.conn;
    let find = scripts::sweep_find(part, CELLS_PER_VISIT, MEMBERS_PER_VISIT);
    let (cut, cells, members): (i64, Vec<String>, Vec<String>) =
        conn.script("finding due members", &find).await?;
    purge_records(store, cut, &members).await?;
    let sweep = scripts::sweep_cells(part, cut, &cells);
    let earliest: Option<i64> = conn.script("sweeping cells", &sweep).await?;
    let cap = cut + store.retention.window().as_millis() as i64;
    let next = earliest.map_or(cap, |e| e.min(cap));
    let ttl_at = cap + store.retention.window().as_millis() as i64;
    let schedule = scripts::part_reschedule(part, next, ttl_at);
    let _: i64 = conn.script("rescheduling", &schedule).await?;
    let cut_at = Timestamp::from_millis(cut);
    let mut expired = Expired::default();
    for member in &members {
        let lag = keys::parse_member(member).map(|m| cut_at.since(m.deadline));
        expired.add(1, lag);
    }
    Ok(expired)
}

/// Deletes the records of `members` that are still due at `cut`, one call per user hash.
async fn purge_records(store: &RedisStore, cut: i64, members: &[String]) -> StoreResult<()> {
    let mut by_hash: HashMap<String, Vec<String>> = HashMap::new();
    for member in members {
        if let Some(keys::Member { user, .. }) = keys::parse_member(member) {
            let field = keys::user_field(Feature::PeopleNearby, &user);
            by_hash
                .entry(keys::user_key(&user))
                .or_default()
                .push(field);
        }
    }
    let calls = by_hash.into_iter().map(|(key, fields)| async move {
        let conn = &store.conn;
        let call = scripts::user_purge(&key, cut, &fields);
        conn.script::<i64>("purging records", &call).await
    });
    try_join_all(calls).await?;
    Ok(())
}
