//! The sweeper: deletes location data at its deadline, explicitly, so purging does not wait
//! for Redis's sampling expiry (which can leave expired keys in memory for minutes). Safe to
//! run on any number of nodes at once: every step is idempotent.
//!
//! One pass: read the partitions due (`vc:n:parts`; in rounds of [`PARTS_PER_PASS`] while a
//! listing comes back full, at most [`PART_ROUNDS_PER_PASS`]), and for each: list the members due in a
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

use std::time::Instant;

use futures_util::future::{join_all, try_join_all};
use h3o::CellIndex;

use super::{RedisStore, keys, scripts};
use crate::{
    domain::{Clock as _, Feature, SystemClock, Timestamp, nearby::OrderContext},
    storage::{Expired, StoreError, StoreResult},
};

/// Partitions listed, and visited concurrently, per round of a pass.
const PARTS_PER_PASS: usize = 256;
/// Rounds per pass at most: a pass lists due partitions again while the last listing was
/// full, so a backlog over a wide area after a stall (more than 256
/// partitions due, over 64,000 km²) drains within the pass, not at 256 partitions a pass.
/// A partition visited in a round whose due cells remain is due again at once, so a later
/// round may visit it again: the longest due come first either way.
const PART_ROUNDS_PER_PASS: usize = 8;
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
/// Record shards a cluster write scheduled ([`keys::SHARDS`]) visited per pass at most, the
/// longest due first (their own budget: they never delay a partition's visit).
const SHARDS_DUE_PER_PASS: usize = 256;

/// Runs one pass; what it deletes is added to `store.swept` step by step, so a pass that
/// fails half-way still reports what it did.
pub(super) async fn sweep(store: &RedisStore) -> StoreResult<()> {
    let now = crate::storage::LocationStore::now(store).await;
    // The plans are emptied each epoch even while Redis does not answer (this node's clock
    // then says when the epoch turned).
    let epoch_now = now.as_ref().map_or_else(|_| SystemClock.now(), |now| *now);
    store.plans.expire(OrderContext::epoch_at(epoch_now));
    let now = now?;
    let clock = Clock {
        store_now: now,
        read_at: Instant::now(),
    };
    let shakes = super::shake::sweep(store).await?;
    report(store, counted(shakes));
    let due = due_entries(store, keys::SHARDS, now, SHARDS_DUE_PER_PASS).await?;
    let shard_visits = due
        .iter()
        .filter_map(|e| keys::parse_shard_entry(e))
        .map(|shard| visit_shard(store, shard));
    let visited: StoreResult<Vec<()>> = join_all(shard_visits).await.into_iter().collect();
    visited?;
    let first = (now.as_millis().max(0) as u64 / 1000 * SHARDS_PER_PASS) % keys::USER_SHARDS;
    let strays = sweep_shards(store, first, SHARDS_PER_PASS).await?;
    report(store, counted(strays));
    for _ in 0..PART_ROUNDS_PER_PASS {
        let due = due_parts(store, now).await?;
        let visits = due
            .iter()
            .filter_map(|p| p.parse::<CellIndex>().ok())
            .map(|p| visit(store, p, clock));
        // Every visit runs to its end; each reports what it deleted itself.
        let visited: StoreResult<Vec<()>> = join_all(visits).await.into_iter().collect();
        visited?;
        if due.len() < PARTS_PER_PASS {
            break;
        }
    }
    Ok(())
}

/// Up to [`PARTS_PER_PASS`] partitions due at `now`, the longest due first.
async fn due_parts(store: &RedisStore, now: Timestamp) -> StoreResult<Vec<String>> {
    due_entries(store, keys::PARTS, now, PARTS_PER_PASS).await
}

/// Up to `count` entries of sweep schedule `schedule` due at `now`, the longest due first.
async fn due_entries(
    store: &RedisStore,
    schedule: &str,
    now: Timestamp,
    count: usize,
) -> StoreResult<Vec<String>> {
    let mut list = redis::cmd("ZRANGEBYSCORE");
    list.arg(schedule)
        .arg("-inf")
        .arg(now.as_millis())
        .arg("LIMIT")
        .arg(0)
        .arg(count);
    store.conn.query("listing due partitions", &list).await
}

/// `n` deletions without a lag.
fn counted(n: u32) -> Expired {
    let mut expired = Expired::default();
    expired.add(n, None);
    expired
}

/// Adds what a step deleted to the store's report.
fn report(store: &RedisStore, expired: Expired) {
    let mut swept = store.swept.lock().unwrap_or_else(|e| e.into_inner());
    *swept = swept.merge(expired);
}

/// The store's time at the start of a pass, and when it was read here: the time of a later
/// deletion is that plus the time gone by since (to the millisecond; the store's own clock
/// would cost a round trip per visit).
#[derive(Debug, Clone, Copy)]
struct Clock {
    store_now: Timestamp,
    read_at: Instant,
}

impl Clock {
    fn now(self) -> Timestamp {
        self.store_now.plus(self.read_at.elapsed())
    }
}

/// Deletes the records past their deadline in `count` user shards from `first` on.
pub(super) async fn sweep_shards(store: &RedisStore, first: u64, count: u64) -> StoreResult<u32> {
    let calls = (first..first + count)
        .map(|shard| async move { Ok::<_, StoreError>(sweep_shard(store, shard).await?.0) });
    Ok(try_join_all(calls).await?.into_iter().sum())
}

/// Visits a record shard a cluster write scheduled ([`scripts::WRITE_SCHEDULE`]): deletes its
/// records and strays past their deadline, then schedules the next visit at the earliest
/// deadline left, at most one retention on (the cap that keeps a racing write's schedule
/// covered, as for partitions); an empty shard stays scheduled a retention on.
async fn visit_shard(store: &RedisStore, shard: u64) -> StoreResult<()> {
    let (deleted, cut, earliest) = sweep_shard(store, shard).await?;
    report(store, counted(deleted));
    let entry = keys::shard_entry_of(shard);
    reschedule(store, keys::SHARDS, &entry, cut, earliest).await
}

async fn visit(store: &RedisStore, part: CellIndex, clock: Clock) -> StoreResult<()> {
    let conn = &store.conn;
    let find = scripts::sweep_find(part, CELLS_PER_VISIT, MEMBERS_PER_VISIT);
    let (cut, cells, members): (i64, Vec<String>, Vec<String>) =
        conn.script("finding due members", &find).await?;
    purge_records(store, cut, &members, clock).await?;
    let sweep = scripts::sweep_cells(part, cut, &cells);
    let earliest: Option<i64> = conn.script("sweeping cells", &sweep).await?;
    reschedule(store, keys::PARTS, &part.to_string(), cut, earliest).await
}

/// Schedules `entry` of sweep schedule `schedule` after a visit that cut at `cut`: at the
/// earliest deadline it left, at most one retention on (the cap that keeps a racing write's
/// schedule covered; see the module docs).
async fn reschedule(
    store: &RedisStore,
    schedule: &str,
    entry: &str,
    cut: i64,
    earliest: Option<i64>,
) -> StoreResult<()> {
    let retention = store.retention.window().as_millis() as i64;
    let cap = cut + retention;
    let next = earliest.map_or(cap, |e| e.min(cap));
    let call = scripts::part_reschedule(schedule, entry, next, cap + retention);
    let _: i64 = store.conn.script("rescheduling", &call).await?;
    Ok(())
}

/// [`scripts::USER_SWEEP`] of `shard`: the records it deleted, its cut and the earliest
/// deadline it left.
async fn sweep_shard(store: &RedisStore, shard: u64) -> StoreResult<(u32, i64, Option<i64>)> {
    let sweep = scripts::user_sweep(shard);
    let (deleted, cut, earliest): (u32, i64, i64) =
        store.conn.script("sweeping records", &sweep).await?;
    Ok((deleted, cut, (earliest >= 0).then_some(earliest)))
}

/// Deletes the records of `members` that are still due at `cut`, one call per user hash, and
/// reports what each call deleted: the records it removed (another node's sweep may have
/// removed some first) with their lags behind their deadlines at that moment.
async fn purge_records(
    store: &RedisStore,
    cut: i64,
    members: &[String],
    clock: Clock,
) -> StoreResult<()> {
    let mut by_hash: HashMap<String, (Vec<String>, Vec<Timestamp>)> = HashMap::new();
    for member in members {
        if let Some(keys::Member { user, deadline, .. }) = keys::parse_member(member) {
            let field = keys::user_field(Feature::PeopleNearby, &user);
            let (fields, deadlines) = by_hash.entry(keys::user_key(&user)).or_default();
            fields.push(field);
            // Strays (a cluster write cut off) go with the last member they name.
            fields.push(keys::strays_field(Feature::PeopleNearby, &user));
            deadlines.push(deadline);
        }
    }
    let calls = by_hash
        .into_iter()
        .map(|(key, (fields, deadlines))| async move {
            let conn = &store.conn;
            let call = scripts::user_purge(&key, cut, &fields);
            let deleted: i64 = conn.script("purging records", &call).await?;
            // Which of the fields were deleted is not returned; their deadlines are all at or
            // before the cut, so the lags of the first `deleted` stand for them.
            let at = clock.now();
            let mut expired = Expired::default();
            for deadline in deadlines.iter().take(deleted.max(0) as usize) {
                expired.add(1, Some(at.since(*deadline)));
            }
            report(store, expired);
            Ok::<_, StoreError>(())
        });
    join_all(calls).await.into_iter().collect()
}
