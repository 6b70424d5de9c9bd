//! The Redis backend (production): a single Redis ≥ 7.0 or a Redis Cluster. The key layout is
//! in [`keys`], every script in [`scripts`].
//!
//! Writes that span hash tags (a user's record and their cell) are ordered so that a failure
//! half-way never leaves location data that no deadline covers: the cell member (which the
//! sweeper finds by deadline) is written before the user's record and removed after it.

mod checks;
mod conn;
mod consent;
pub mod keys;
pub mod scripts;
mod shake;
mod sweep;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::try_join_all;
use h3o::CellIndex;
use redis::Value;
use tonic::async_trait;
use tracing::instrument;

pub use checks::{Persistence, persistence};
pub use conn::{Conn, Target};
pub use consent::RedisConsentStore;

use super::{
    LocationEntry, LocationStore, NearbyResult, Position, StoreError, StoreErrorKind, StoreResult,
};
use crate::domain::{
    Deadlines, Feature, Gender, Retention, SnapGrid, Timestamp, UserId,
    nearby::{FIRST_BATCH, NearbyQuery, NearbyRequest, Tickets},
};

/// The Redis location store.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// A connection of its own for the later batches of far or sparse searches: Redis serves
    /// its clients in turn, so an update or a near list on `conn` waits behind at most one
    /// script of a far search, not behind every script a far search has queued (SPEC §4.5).
    bulk: Conn,
    tickets: Tickets,
    waker: Arc<shake::Waker>,
    grid: SnapGrid,
    retention: Retention,
    /// [`MAX_KEYS_PER_SCRIPT`] (tests make it smaller).
    keys_per_script: usize,
}

/// The most cell keys one cell-reading script is given (SPEC §4.5: no call holds the Redis
/// thread for more than a few milliseconds): each key costs Redis about 1.5 µs even when
/// empty, so about 1.5 ms. A call's cells ([`crate::domain::nearby::MAX_CELLS_PER_CALL`] at most) go to as many
/// scripts as they need, concurrently. Splitting a band across scripts is safe for the same
/// reason a cluster's partitions are: each script reads its own cells until it holds what the
/// page needs (or to the end), so the page's best members all lie below every script's window.
/// Before, one 50 km list in an empty area sent ~65,000 keys to one script (95 ms of Redis's
/// only thread).
pub const MAX_KEYS_PER_SCRIPT: usize = 1_024;

/// The members of fetched cells: user, gender, last activity.
type Fetched = HashMap<CellIndex, Vec<(UserId, Gender, Timestamp)>>;

impl RedisStore {
    /// Connects to the location store. `retention` is the deployment's retention (every node
    /// must use the same; the sweeper schedules by it), `timeout` bounds each store call.
    pub async fn connect(
        target: &Target,
        grid: SnapGrid,
        tickets: Tickets,
        retention: Retention,
        timeout: Duration,
    ) -> StoreResult<Self> {
        let conn = Conn::connect(target, timeout).await?;
        let bulk = Conn::connect(target, timeout).await?;
        Ok(Self {
            conn,
            bulk,
            tickets,
            waker: shake::Waker::start(target)?,
            grid,
            retention,
            keys_per_script: MAX_KEYS_PER_SCRIPT,
        })
    }

    async fn read_record(
        &self,
        feature: Feature,
        user: &UserId,
    ) -> StoreResult<(Timestamp, Option<(Vec<u8>, LocationEntry)>)> {
        let conn = &self.conn;
        let (now, raw): (i64, Option<Vec<u8>>) = if self.conn.is_cluster() {
            let mut call = scripts::USER_GET.prepare_invoke();
            call.key(keys::user_key(user))
                .arg(keys::user_field(feature, user));
            conn.script("reading a record", &call).await?
        } else {
            // On one node the clock and the record come from one server: two plain commands
            // in one round trip cost Redis less than a script call.
            let mut pipe = redis::pipe();
            pipe.cmd("TIME")
                .cmd("HGET")
                .arg(keys::user_key(user))
                .arg(keys::user_field(feature, user));
            let ((secs, micros), raw): ((i64, i64), Option<Vec<u8>>) =
                conn.pipeline("reading a record", &pipe).await?;
            (secs * 1000 + micros / 1000, raw)
        };
        let entry = raw.and_then(|raw| {
            let entry = keys::decode_record(feature, user, &raw)?;
            Some((raw, entry))
        });
        Ok((Timestamp::from_millis(now), entry))
    }

    /// Adds or renews `position`'s user in their cell (replacing their member there);
    /// returns the deadlines from the server clock.
    async fn cell_add(&self, position: &Position, retention: Retention) -> StoreResult<Deadlines> {
        let conn = &self.conn;
        let mut call = scripts::CELL_ADD.prepare_invoke();
        call.key(keys::cell_key(position.cell))
            .key(keys::due_key(keys::partition(position.cell)))
            .arg(keys::gender_tag(position.gender).to_string())
            .arg(position.user_id.as_str())
            .arg(self.tickets.of(&position.user_id))
            .arg(retention.window().as_millis() as u64)
            .arg(position.cell.to_string());
        let reply = conn.script("adding to a cell", &call).await?;
        Ok(written(reply))
    }

    /// [`LocationStore::upsert`] on a single node: one atomic script ([`scripts::UPSERT`]).
    async fn upsert_at_once(
        &self,
        position: &Position,
        retention: Retention,
    ) -> StoreResult<Deadlines> {
        let part = keys::partition(position.cell);
        let conn = &self.conn;
        let mut call = scripts::UPSERT.prepare_invoke();
        call.key(keys::cell_key(position.cell))
            .key(keys::due_key(part))
            .key(keys::user_key(&position.user_id))
            .key(keys::PARTS)
            .arg(keys::gender_tag(position.gender).to_string())
            .arg(position.user_id.as_str())
            .arg(self.tickets.of(&position.user_id))
            .arg(retention.window().as_millis() as u64)
            .arg(position.cell.to_string())
            .arg(keys::user_field(position.feature, &position.user_id))
            .arg(keys::record_without_deadline(position, retention))
            .arg(part.to_string())
            .arg(u8::from(keys::PARTITION_RES));
        let reply = conn.script("updating a location", &call).await?;
        Ok(written(reply))
    }

    async fn put_record(
        &self,
        position: &Position,
        deadlines: &Deadlines,
        left: bool,
    ) -> StoreResult<Option<Vec<u8>>> {
        let conn = &self.conn;
        let mut call = scripts::USER_PUT.prepare_invoke();
        call.key(keys::user_key(&position.user_id))
            .arg(keys::user_field(position.feature, &position.user_id))
            .arg(keys::encode_record(position, deadlines, left))
            .arg(deadlines.purge_at.as_millis());
        conn.script("writing a record", &call).await
    }

    /// [`LocationStore::leave`] on a cluster, where the member and the record live in two
    /// slots: renew the member only if it is there, then the record only if it is there and
    /// still names that cell. Neither step creates anything, so a Clear or a withdrawal that
    /// runs in between is never undone; and the member's deadline is written first, so it is
    /// never earlier than the record's (the sweeper finds records through members).
    async fn leave_in_steps(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>> {
        let (now, entry) = self.read_record(feature, user).await?;
        let Some((_, entry)) = entry.filter(|(_, e)| !e.deadlines.is_expired(now)) else {
            return Ok(None);
        };
        let cell = entry.position.cell;
        let conn = &self.conn;
        let mut renew = scripts::CELL_RENEW.prepare_invoke();
        renew
            .key(keys::cell_key(cell))
            .key(keys::due_key(keys::partition(cell)))
            .arg(keys::gender_tag(entry.position.gender).to_string())
            .arg(user.as_str())
            .arg(self.tickets.of(user))
            .arg(retention.window().as_millis() as u64)
            .arg(cell.to_string())
            .arg(keys::member(
                entry.position.gender,
                entry.deadlines.purge_at,
                user,
            ));
        let renewed: Option<(i64, i64)> = conn.script("renewing a member", &renew).await?;
        let Some(deadlines) = renewed.map(written) else {
            return Ok(None);
        };
        let mut mark = scripts::USER_LEAVE.prepare_invoke();
        mark.key(keys::user_key(user))
            .arg(keys::user_field(feature, user))
            .arg(u64::from(cell).to_be_bytes().as_slice())
            .arg(deadlines.purge_at.as_millis())
            .arg(retention.window().as_millis() as u64);
        let marked: u32 = conn.script("marking a record left", &mark).await?;
        self.schedule(cell, deadlines.purge_at).await?;
        Ok((marked > 0).then_some(deadlines))
    }

    /// One feature of [`LocationStore::clear`] on a cluster: the member of the cell the record
    /// names is dropped (by ticket, whatever its deadline), then the record is taken, and the
    /// member of the cell the taken record names is dropped too: an UpdateLocation that wrote
    /// its member and record between the first two steps (in the same cell or another) is
    /// removed whole. A member a concurrent Leave renews is one these steps drop (Leave
    /// creates nothing). Returns whether there was a record.
    async fn clear_in_steps(&self, feature: Feature, user: &UserId) -> StoreResult<bool> {
        let (_, read) = self.read_record(feature, user).await?;
        let first = read.as_ref().map(|(_, e)| e.position.cell);
        if let Some((_, entry)) = &read {
            self.drop_member(entry).await?;
        }
        let conn = &self.conn;
        let mut take = scripts::USER_TAKE.prepare_invoke();
        take.key(keys::user_key(user))
            .arg(keys::user_field(feature, user));
        let taken: Option<Vec<u8>> = conn.script("deleting a record", &take).await?;
        let Some(raw) = taken else {
            return Ok(first.is_some());
        };
        if let Some(entry) = keys::decode_record(feature, user, &raw) {
            self.drop_member(&entry).await?;
        }
        Ok(true)
    }

    /// Removes every member of the user of `entry` from its cell: by this node's ticket, and
    /// the member the entry names (written under another ticket by a node with another
    /// order secret).
    async fn drop_member(&self, entry: &LocationEntry) -> StoreResult<()> {
        let (cell, user) = (entry.position.cell, &entry.position.user_id);
        let named = keys::member(entry.position.gender, entry.deadlines.purge_at, user);
        let conn = &self.conn;
        let mut call = scripts::CELL_DROP_USER.prepare_invoke();
        call.key(keys::cell_key(cell))
            .key(keys::due_key(keys::partition(cell)))
            .arg(user.as_str())
            .arg(self.tickets.of(user))
            .arg(cell.to_string())
            .arg(named);
        let _: i64 = conn.script("removing from a cell", &call).await?;
        Ok(())
    }

    /// Makes sure the sweeper visits the partition of `cell` by `at`.
    async fn schedule(&self, cell: CellIndex, at: Timestamp) -> StoreResult<()> {
        let conn = &self.conn;
        let mut call = scripts::PART_SCHEDULE.prepare_invoke();
        call.key(keys::PARTS)
            .arg(at.as_millis())
            .arg(keys::partition(cell).to_string())
            .arg(at.plus(self.retention.window()).as_millis());
        let _: i64 = conn.script("scheduling a sweep", &call).await?;
        Ok(())
    }

    /// Reads `cells` (with their bands) for `query`: on a single node in one script call, on
    /// a cluster in one call per partition (a script's keys must share a slot there),
    /// concurrently; each call reads only as far as the page needs. Returns the earliest
    /// (band, key) point where a call stopped short of that (see [`scripts::CELLS_READ`]).
    async fn fetch(
        &self,
        conn: &Conn,
        query: &NearbyQuery,
        cells: Vec<(CellIndex, u32)>,
        into: &mut Fetched,
    ) -> StoreResult<Option<(u32, u64)>> {
        let groups = if self.conn.is_cluster() {
            let mut by_part: HashMap<CellIndex, Vec<(CellIndex, u32)>> = HashMap::new();
            for (cell, band) in cells {
                by_part
                    .entry(keys::partition(cell))
                    .or_default()
                    .push((cell, band));
            }
            by_part.into_values().collect()
        } else {
            vec![cells]
        };
        let calls = groups
            .into_iter()
            .flat_map(|mut cells| {
                cells.sort_by_key(|(_, band)| *band);
                let chunks: Vec<_> = cells
                    .chunks(self.keys_per_script)
                    .map(<[_]>::to_vec)
                    .collect();
                chunks
            })
            .map(|cells| self.fetch_partition(conn, query, cells));
        let mut until = None;
        for (cells, reply) in try_join_all(calls).await? {
            let stop = decode_cells(&cells, reply, self.retention, into);
            until = earliest(until, stop);
        }
        Ok(until)
    }

    async fn fetch_partition(
        &self,
        conn: &Conn,
        query: &NearbyQuery,
        cells: Vec<(CellIndex, u32)>,
    ) -> StoreResult<(Vec<(CellIndex, u32)>, Vec<Value>)> {
        let (after_band, after_key) = query
            .after
            .as_ref()
            .map_or((-1, 0), |c| (i64::from(c.band_m), c.key));
        let mut call = scripts::CELLS_READ.prepare_invoke();
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
        for (cell, band) in &cells {
            call.key(keys::cell_key(*cell)).arg(*band);
        }
        let reply: Vec<Value> = conn.script("reading cells", &call).await?;
        Ok((cells, reply))
    }
}

/// The deadlines of a write from a script's `{last_active, purge_at}` reply (server clock;
/// visible until purged, SPEC §4.2's default).
fn written((last_active, purge): (i64, i64)) -> Deadlines {
    Deadlines {
        last_active: Timestamp::from_millis(last_active),
        visible_until: Timestamp::from_millis(purge),
        purge_at: Timestamp::from_millis(purge),
    }
}

/// The earlier of two (band, key) points where a read stopped, either of which may be absent.
fn earliest(a: Option<(u32, u64)>, b: Option<(u32, u64)>) -> Option<(u32, u64)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decodes `{now, stop band, stop key, index, 'member\nmember...', ...}` into visible
/// members; skips anything malformed and anything past its deadline. Returns where the read
/// stopped short, if it did.
fn decode_cells(
    cells: &[(CellIndex, u32)],
    reply: Vec<Value>,
    retention: Retention,
    into: &mut Fetched,
) -> Option<(u32, u64)> {
    let mut items = reply.into_iter();
    let mut int = || {
        items
            .next()
            .and_then(|v| redis::from_redis_value::<i64>(v).ok())
    };
    let now = int().map_or(Timestamp::from_millis(i64::MAX), Timestamp::from_millis);
    let stop_band = int().and_then(|b| u32::try_from(b).ok());
    let stop_key = int().and_then(|k| u64::try_from(k).ok()).unwrap_or(0);
    let stop = stop_band.map(|band| (band, stop_key));
    let lived = retention.window().as_millis() as i64;
    while let (Some(index), Some(text)) = (items.next(), items.next()) {
        let (Ok(index), Ok(text)) = (
            redis::from_redis_value::<usize>(index),
            redis::from_redis_value::<String>(text),
        ) else {
            continue;
        };
        let Some((cell, _)) = index.checked_sub(1).and_then(|i| cells.get(i)) else {
            continue;
        };
        let list = into.entry(*cell).or_default();
        for member in text.split('\n').filter_map(keys::parse_member) {
            if member.deadline > now {
                let last_active = Timestamp::from_millis(member.deadline.as_millis() - lived);
                list.push((member.user, member.gender, last_active));
            }
        }
    }
    stop
}

#[async_trait]
impl LocationStore for RedisStore {
    #[instrument(skip_all)]
    async fn upsert(&self, position: Position, retention: Retention) -> StoreResult<Deadlines> {
        if !self.conn.is_cluster() {
            return self.upsert_at_once(&position, retention).await;
        }
        let deadlines = self.cell_add(&position, retention).await?;
        let old = self.put_record(&position, &deadlines, false).await?;
        let old =
            old.and_then(|raw| keys::decode_record(position.feature, &position.user_id, &raw));
        if let Some(old) = old.filter(|old| old.position.cell != position.cell) {
            self.drop_member(&old).await?;
        }
        self.schedule(position.cell, deadlines.purge_at).await?;
        Ok(deadlines)
    }

    #[instrument(skip_all)]
    async fn get(&self, feature: Feature, user: &UserId) -> StoreResult<Option<LocationEntry>> {
        let (now, entry) = self.read_record(feature, user).await?;
        Ok(entry
            .map(|(_, e)| e)
            .filter(|e| !e.deadlines.is_expired(now)))
    }

    #[instrument(skip_all)]
    async fn leave(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>> {
        if self.conn.is_cluster() {
            return self.leave_in_steps(feature, user, retention).await;
        }
        let conn = &self.conn;
        let mut call = scripts::LEAVE.prepare_invoke();
        call.key(keys::user_key(user))
            .key(keys::PARTS)
            .arg(keys::user_field(feature, user))
            .arg(user.as_str())
            .arg(self.tickets.of(user))
            .arg(retention.window().as_millis() as u64)
            .arg(u8::from(keys::PARTITION_RES));
        let reply: Option<(i64, i64)> = conn.script("leaving", &call).await?;
        Ok(reply.map(written))
    }

    #[instrument(skip_all)]
    async fn clear(&self, user: &UserId, features: &[Feature]) -> StoreResult<u32> {
        let mut cleared = 0;
        for feature in features {
            let found = if self.conn.is_cluster() {
                self.clear_in_steps(*feature, user).await?
            } else {
                let conn = &self.conn;
                let mut call = scripts::CLEAR.prepare_invoke();
                call.key(keys::user_key(user))
                    .arg(keys::user_field(*feature, user))
                    .arg(user.as_str())
                    .arg(self.tickets.of(user))
                    .arg(u8::from(keys::PARTITION_RES));
                let n: u32 = conn.script("clearing", &call).await?;
                n > 0
            };
            cleared += u32::from(found);
        }
        Ok(cleared)
    }

    #[instrument(skip_all, fields(limit = request.limit))]
    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>> {
        let (now, own) = self
            .read_record(Feature::PeopleNearby, &request.viewer)
            .await?;
        let Some((_, own)) = own.filter(|(_, e)| !e.left && !e.deadlines.is_expired(now)) else {
            return Ok(None);
        };
        let mut query = request.query(own.position.cell, now);
        let mut walk = query.walk(&self.grid);
        let mut fetched = Fetched::new();
        let mut read: Vec<(u32, Vec<CellIndex>)> = Vec::new();
        let mut batch = FIRST_BATCH;
        let page = loop {
            let first = read.is_empty();
            let cells = if first {
                walk.next_batch(batch, &mut read)
            } else {
                // A later batch is a far or sparse search: its walk (milliseconds of CPU at
                // most) runs on a blocking thread, not on the runtime's workers.
                let (mut w, mut r) = (walk, std::mem::take(&mut read));
                let (w, r, cells) = tokio::task::spawn_blocking(move || {
                    let cells = w.next_batch(batch, &mut r);
                    (w, r, cells)
                })
                .await
                .map_err(|_| StoreError::new(StoreErrorKind::Unavailable, "searching"))?;
                (walk, read) = (w, r);
                cells
            };
            let more = !cells.is_empty();
            if more {
                let stop = if first {
                    self.fetch(&self.conn, &query, cells, &mut fetched).await?
                } else {
                    match self
                        .fetch(&self.bulk, &query, cells.clone(), &mut fetched)
                        .await
                    {
                        // The bulk connection is idle between far searches, so after a Redis
                        // restart its first call finds the old socket dead (and reconnects):
                        // a read is safe to repeat, once, on the connection health keeps warm.
                        Err(e) if e.kind == StoreErrorKind::Unavailable => {
                            self.fetch(&self.conn, &query, cells, &mut fetched).await?
                        }
                        other => other?,
                    }
                };
                query.read_until = earliest(query.read_until, stop);
            }
            let (page, full) = query.rank(&read, walk.cut(), |cell, sink| {
                for (user, gender, last_active) in fetched.get(&cell).into_iter().flatten() {
                    sink.offer(user, self.tickets.of(user), *gender, *last_active);
                }
            });
            if full || !more || query.read_until.is_some() {
                break page;
            }
            batch = (batch * 2).min(crate::domain::nearby::MAX_CELLS_PER_CALL);
        };
        Ok(Some(NearbyResult::of(&query, page, now)))
    }

    async fn purge_expired(&self) -> StoreResult<u32> {
        sweep::sweep(self).await
    }

    async fn now(&self) -> StoreResult<Timestamp> {
        let conn = &self.conn;
        let (secs, micros): (i64, i64) =
            conn.query("reading the time", &redis::cmd("TIME")).await?;
        Ok(Timestamp::from_millis(secs * 1000 + micros / 1000))
    }
}
