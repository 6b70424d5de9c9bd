//! The sweeper: deletes location data at its deadline, explicitly, so purging does not wait
//! for Redis's sampling expiry (which can leave expired keys in memory for minutes). Safe to
//! run on any number of nodes at once: every step is idempotent.
//!
//! One pass: read the partitions due (`vc:n:parts`), and for each: list the members due
//! (SWEEP_FIND, which also fixes the cut-off time), delete their users' records if they are
//! still due (USER_PURGE, per user hash), then remove the members and re-score the cells
//! (SWEEP_CELLS, only up to the cut-off, so no record is left without a member pointing at
//! it), then schedule the partition's next visit.
//!
//! Scheduling: the next visit is `min(earliest deadline left, cut + retention)`. A write that
//! races with the sweep can only add deadlines at or after `its now + retention`, so the
//! `cut + retention` cap keeps it covered (to within the write's own duration) even if the
//! plain ZADD here overwrites its `ZADD LT`. Every node must therefore use the same retention.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use h3o::CellIndex;

use super::{RedisStore, conn::bounded, keys, scripts};
use crate::{domain::Feature, storage::StoreResult};

/// Partitions visited per pass, and due cells per partition visit.
const PARTS_PER_PASS: usize = 256;
const CELLS_PER_VISIT: usize = 1_000;

/// Runs one pass; returns how many members were purged.
pub(super) async fn sweep(store: &RedisStore) -> StoreResult<u32> {
    let now = crate::storage::LocationStore::now(store).await?;
    let mut conn = store.conn.clone();
    let due: Vec<String> = bounded(
        store.timeout,
        "listing due partitions",
        redis::cmd("ZRANGEBYSCORE")
            .arg(keys::PARTS)
            .arg("-inf")
            .arg(now.as_millis())
            .arg("LIMIT")
            .arg(0)
            .arg(PARTS_PER_PASS)
            .query_async(&mut conn),
    )
    .await?;
    let shakes = super::shake::sweep(store).await?;
    let visits = due
        .iter()
        .filter_map(|p| p.parse::<CellIndex>().ok())
        .map(|p| visit(store, p));
    Ok(shakes + try_join_all(visits).await?.into_iter().sum::<u32>())
}

async fn visit(store: &RedisStore, part: CellIndex) -> StoreResult<u32> {
    let prefix = keys::cell_prefix(part);
    let mut conn = store.conn.clone();
    let mut find = scripts::SWEEP_FIND.prepare_invoke();
    find.key(keys::due_key(part))
        .arg(&prefix)
        .arg(CELLS_PER_VISIT);
    let found: Vec<redis::Value> = bounded(
        store.timeout,
        "finding due members",
        find.invoke_async(&mut conn),
    )
    .await?;
    let mut found = found.into_iter();
    let cut: i64 = found
        .next()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_default();
    let members: Vec<String> = found
        .filter_map(|v| redis::from_redis_value(v).ok())
        .collect();
    purge_records(store, cut, &members).await?;
    let mut cells = scripts::SWEEP_CELLS.prepare_invoke();
    cells.key(keys::due_key(part)).arg(&prefix).arg(cut);
    let earliest: Option<i64> = bounded(
        store.timeout,
        "sweeping cells",
        cells.invoke_async(&mut conn),
    )
    .await?;
    let cap = cut + store.retention.window().as_millis() as i64;
    let next = earliest.map_or(cap, |e| e.min(cap));
    let mut schedule = scripts::PART_RESCHEDULE.prepare_invoke();
    schedule
        .key(keys::PARTS)
        .arg(next)
        .arg(part.to_string())
        .arg(cap + store.retention.window().as_millis() as i64);
    let _: i64 = bounded(
        store.timeout,
        "rescheduling",
        schedule.invoke_async(&mut conn),
    )
    .await?;
    if !members.is_empty() {
        tracing::info!(target: "vicinity::audit", action = "purge", purged_entries = members.len(), "audit");
    }
    Ok(members.len() as u32)
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
        let mut conn = store.conn.clone();
        let mut call = scripts::USER_PURGE.prepare_invoke();
        call.key(key).arg(cut);
        for field in &fields {
            call.arg(field);
        }
        bounded(
            store.timeout,
            "purging records",
            call.invoke_async::<i64>(&mut conn),
        )
        .await
    });
    try_join_all(calls).await?;
    Ok(())
}
