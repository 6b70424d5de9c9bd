//! The Redis backend (production): a single Redis ≥ 7.0 or a Redis Cluster. The key layout is
//! in [`keys`], every script in [`scripts`].
//!
//! Writes that span hash tags (a user's record and their cell) are ordered so that a failure
//! half-way never leaves location data that no deadline covers: the cell member (which the
//! sweeper finds by deadline) is written before the user's record and removed after it.

mod cells;
mod checks;
mod conn;
mod consent;
mod fences;
pub mod granted_cache;
pub mod keys;
pub mod scripts;
mod shake;
mod steps;
mod sweep;
#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use futures_util::future::try_join;
use h3o::CellIndex;
use tonic::async_trait;
use tracing::instrument;

use cells::Fetched;
pub use cells::MAX_KEYS_PER_SCRIPT;
pub use checks::{Persistence, persistence};
pub use conn::{
    ClientTlsConfig, Conn, Nodes, RedisUrl, Target, TlsCertificates, redacted, transient,
};
pub use consent::RedisConsentStore;
pub use fences::FENCE_REUSE;
use fences::Fences;
use steps::written;

use super::{
    Admission, Expired, Fence, Holding, Judged, Limit, LimitKey, LimitStore, Limited,
    LocationEntry, LocationStore, NearbyResult, Position, StoreError, StoreErrorKind, StoreResult,
    UpdateLimits,
};
use crate::domain::{
    Deadlines, Feature, Retention, SnapGrid, Timestamp, UserId,
    limits::Rate,
    nearby::{NearbyRequest, Plans, Pseudonyms, Search, Tickets},
};

/// The smallest batch of cells a search reads on the bulk connection. Smaller batches (a near
/// list's second and third: 38 and 76 cells) stay on the shared connection, where the calls
/// of a busy node are written out together; measured: sending them on the bulk connection
/// too cost ListNearby throughput about a tenth (`scripts/ab`, docs/performance.md).
const BULK_BATCH: usize = 256;

/// The Redis location store.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// A connection of its own for the big batches of far or sparse searches (at least
    /// [`BULK_BATCH`] cells): Redis serves its clients in turn, so an update or a near list on
    /// `conn` waits behind at most one script of a far search, not behind every script a far
    /// search has queued (contract §4.5).
    bulk: Conn,
    tickets: Tickets,
    /// Keyed stand-ins for user ids in readable key names (Shake tombstones).
    pseudonyms: Pseudonyms,
    waker: Arc<shake::Waker>,
    grid: SnapGrid,
    /// First batches of first pages by viewer cell ([`Plans`]).
    plans: Arc<Plans>,
    retention: Retention,
    /// [`MAX_KEYS_PER_SCRIPT`] (tests make it smaller).
    keys_per_script: usize,
    /// [`PROVISIONAL_HOLD`] (tests make it shorter).
    hold: Duration,
    /// The clear marks this node last read, so an update rarely reads its fence ([`fences`]).
    fences: Arc<Fences>,
    /// What this node's sweeps deleted since `purge_expired` last reported (a pass that
    /// failed half-way keeps what its successful steps deleted for the next report).
    swept: Arc<std::sync::Mutex<Expired>>,
}

/// How long a cluster UpdateLocation's new member counts before its last step confirms it
/// (contract §4.5: a service node can die between the steps of a cluster write, and a member
/// without its record would be listed, and missed by a Clear, until its full deadline). Long
/// enough for the steps under a slow store (each at most the store timeout, 10 s at most);
/// a member confirmed after its hold passed is confirmed all the same while it is there.
pub const PROVISIONAL_HOLD: Duration = Duration::from_secs(30);

/// The location store's name in metrics and logs (the `store` label).
pub const LOCATIONS: &str = "locations";
/// The consent store's name in metrics and logs (the `store` label).
pub const CONSENTS: &str = "consents";

impl RedisStore {
    /// Connects to the location store. `retention` is the deployment's retention (every node
    /// must use the same; the sweeper schedules by it), `timeout` bounds each store call.
    pub async fn connect(
        target: &Target,
        grid: SnapGrid,
        tickets: Tickets,
        pseudonyms: Pseudonyms,
        retention: Retention,
        timeout: Duration,
    ) -> StoreResult<Self> {
        let conn = Conn::connect(target, timeout, LOCATIONS).await?;
        let bulk = Conn::connect(target, timeout, LOCATIONS).await?;
        Ok(Self {
            conn,
            bulk,
            tickets,
            pseudonyms,
            waker: shake::Waker::start(target)?,
            grid,
            plans: Arc::default(),
            retention,
            keys_per_script: MAX_KEYS_PER_SCRIPT,
            hold: PROVISIONAL_HOLD,
            fences: Arc::new(Fences::new(FENCE_REUSE)),
            swept: Arc::default(),
        })
    }
}

#[async_trait]
impl LocationStore for RedisStore {
    #[instrument(level = "debug", skip_all)]
    async fn fence(&self, user: &UserId) -> StoreResult<Fence> {
        if self.conn.is_cluster() {
            // Read every time: a cluster write refused by its fence has counted the update
            // rate already (known-gaps.md), so a fence seen before a clear elsewhere would
            // count a user's updates twice whenever a user of their shard cleared.
            return self.read_fence(user).await;
        }
        match self.fences.get(keys::shard_of(user)) {
            Some(fence) => Ok(fence),
            None => self.fresh_fence(user).await,
        }
    }

    #[instrument(level = "debug", skip_all)]
    async fn fresh_fence(&self, user: &UserId) -> StoreResult<Fence> {
        let fence = self.read_fence(user).await?;
        if !self.conn.is_cluster() {
            self.fences.saw(keys::shard_of(user), fence);
        }
        Ok(fence)
    }

    async fn upsert(
        &self,
        position: Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<Deadlines> {
        if !self.conn.is_cluster() {
            return self.write_whole(&position, retention, fence).await;
        }
        // The steps and why each cut-off is safe: `steps.rs` and docs/decisions.md ("A cluster
        // write cut off between its steps"). The fence is compared by the mark step and by
        // the record's: a clear after the record's removes it; a clear between the two took
        // the strays, so the record's step, fenced, drops the member the cell step added.
        self.schedule_write(&position, retention, fence).await?;
        self.mark_stray(&position, retention, fence).await?;
        let deadlines = self.write_position(&position, retention).await?;
        let old = self.put_record(&position, &deadlines, false, fence).await?;
        let old =
            old.and_then(|raw| keys::decode_record(position.feature, &position.user_id, &raw));
        let mut settled = vec![position.cell];
        if let Some(old) = old.filter(|old| old.position.cell != position.cell) {
            self.drop_member(&old).await?;
            settled.push(old.position.cell);
        }
        self.confirm_member(&position, &deadlines).await?;
        self.unmark(&position, &settled).await?;
        Ok(deadlines)
    }

    /// On a single node, one script ([`scripts::UPSERT`] with the rate's key); a cluster has
    /// no such step (the rate and the record live in other slots than the cell).
    #[instrument(level = "debug", skip_all)]
    async fn upsert_limited(
        &self,
        position: &Position,
        retention: Retention,
        limits: &UpdateLimits,
        fence: Fence,
    ) -> StoreResult<Option<Limited>> {
        if self.conn.is_cluster() {
            return Ok(None);
        }
        let ticket = self.tickets.of(&position.user_id);
        let call = scripts::upsert_limited(position, ticket, retention, limits, fence);
        let (what, a, b): (i64, i64, redis::Value) =
            self.conn.script("updating a location", &call).await?;
        let corrupt = || StoreError::new(StoreErrorKind::Corrupt, "decoding a limited write");
        Ok(Some(match what {
            1 => {
                let purge = redis::from_redis_value::<i64>(b).map_err(|_| corrupt())?;
                Limited::Written(written((a, purge)))
            }
            4 => {
                // Refused: the next attempt reads the shard's fence afresh.
                self.fences.forget(keys::shard_of(&position.user_id));
                return Err(StoreError::fenced());
            }
            0 | 3 => Limited::Refused {
                limit: if what == 0 {
                    Limit::Updates
                } else {
                    Limit::Starts
                },
                retry_after: Duration::from_millis(a.max(0) as u64),
            },
            _ => {
                let raw = redis::from_redis_value::<Vec<u8>>(b).map_err(|_| corrupt())?;
                let (feature, user) = (position.feature, &position.user_id);
                let previous = keys::decode_record(feature, user, &raw).ok_or_else(corrupt)?;
                Limited::Check {
                    previous,
                    now: Timestamp::from_millis(a),
                }
            }
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn get(&self, feature: Feature, user: &UserId) -> StoreResult<Option<LocationEntry>> {
        let (now, entry) = self.read_record(feature, user).await?;
        Ok(entry
            .map(|(_, e)| e)
            .filter(|e| !e.deadlines.is_expired(now)))
    }

    #[instrument(level = "debug", skip_all)]
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
        let call = scripts::leave(feature, user, self.tickets.of(user), retention);
        let reply: Option<(i64, i64)> = conn.script("leaving", &call).await?;
        Ok(reply.map(written))
    }

    #[instrument(level = "debug", skip_all)]
    async fn clear(&self, user: &UserId, features: &[Feature]) -> StoreResult<u32> {
        let mut cleared = 0;
        for feature in features {
            let found = if self.conn.is_cluster() {
                self.clear_in_steps(*feature, user).await?
            } else {
                let conn = &self.conn;
                let call = scripts::clear(*feature, user, self.tickets.of(user));
                let n: u32 = conn.script("clearing", &call).await?;
                n > 0
            };
            cleared += u32::from(found);
        }
        if features.contains(&Feature::PeopleNearby) {
            // The clear set a new mark: this node's next write to the shard reads it.
            self.fences.forget(keys::shard_of(user));
        }
        self.conn.replicated("replicating a clear").await?;
        Ok(cleared)
    }

    #[instrument(level = "debug", skip_all, fields(limit = request.limit))]
    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>> {
        let (now, own) = self
            .read_record(Feature::PeopleNearby, &request.viewer)
            .await?;
        let Some((_, own)) = own.filter(|(_, e)| !e.left && !e.deadlines.is_expired(now)) else {
            return Ok(None);
        };
        Ok(Some(self.nearby_at(request, own.position.cell, now).await?))
    }

    #[instrument(level = "debug", skip_all, fields(limit = request.limit))]
    async fn nearby_at(
        &self,
        request: &NearbyRequest,
        own_cell: CellIndex,
        now: Timestamp,
    ) -> StoreResult<NearbyResult> {
        let (mut search, mut cells) =
            Search::start(request.query(own_cell, now), &self.grid, &self.plans);
        let mut fetched = Fetched::new();
        let mut first = true;
        loop {
            if !cells.is_empty() {
                let stop = if first || cells.len() < BULK_BATCH {
                    self.fetch(&self.conn, search.query(), cells, &mut fetched)
                        .await?
                } else {
                    match self
                        .fetch(&self.bulk, search.query(), cells.clone(), &mut fetched)
                        .await
                    {
                        // The bulk connection is idle between far searches, so after a Redis
                        // restart or a cluster failover its first call finds an old socket
                        // dead or silent (and reconnects, or refreshes the slots): a read is
                        // safe to repeat, once, on the connection health keeps warm.
                        Err(e)
                            if matches!(
                                e.kind,
                                StoreErrorKind::Unavailable | StoreErrorKind::Timeout
                            ) =>
                        {
                            self.fetch(&self.conn, search.query(), cells, &mut fetched)
                                .await?
                        }
                        other => other?,
                    }
                };
                search.stopped_at(stop);
            }
            first = false;
            let page = search.rank(|cell, sink| {
                for (user, gender, last_active) in fetched.get(&cell).into_iter().flatten() {
                    sink.offer(user, self.tickets.of(user), *gender, *last_active);
                }
            });
            if let Some(page) = page {
                return Ok(NearbyResult::of(search.query(), page, now));
            }
            // A later batch is a far or sparse search: its walk (milliseconds of CPU at most)
            // runs on a blocking thread, not on the runtime's workers.
            (search, cells) = tokio::task::spawn_blocking(move || {
                let cells = search.next_batch();
                (search, cells)
            })
            .await
            .map_err(|e| StoreError::unfinished(&e, "searching"))?;
        }
    }

    async fn purge_expired(&self) -> StoreResult<Expired> {
        sweep::sweep(self).await?;
        let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::take(&mut *swept))
    }

    async fn earliest_deadline(&self) -> StoreResult<Option<Timestamp>> {
        // The heads of the schedules scored by deadlines, one round trip per slot: People
        // Nearby's partitions and Shake's three. Not the record shards' (`keys::SHARDS`): those
        // are scored by when to visit them next, and under a cluster's writes their visits run
        // behind by design while the partition visits delete every record on time.
        let heads = |keys: &mut dyn Iterator<Item = String>| {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("ZRANGE").arg(key).arg(0).arg(0).arg("WITHSCORES");
            }
            pipe
        };
        let nearby = heads(&mut std::iter::once(keys::PARTS.to_owned()));
        let shake = heads(
            &mut (keys::SHAKE_SCHEDULES.iter()).map(|k| format!("{}{k}", keys::SHAKE_PREFIX)),
        );
        let context = "reading the sweep schedules";
        let (nearby, shake): (Vec<Vec<(String, i64)>>, Vec<Vec<(String, i64)>>) = try_join(
            self.conn.pipeline(context, &nearby),
            self.conn.pipeline(context, &shake),
        )
        .await?;
        let earliest = nearby
            .iter()
            .chain(&shake)
            .flatten()
            .map(|(_, at)| *at)
            .min();
        Ok(earliest.map(Timestamp::from_millis))
    }

    async fn now(&self) -> StoreResult<Timestamp> {
        let conn = &self.conn;
        let time = conn.time("reading the time").await?;
        Ok(Timestamp::from_millis(conn::time_ms(time)))
    }
}

/// A limit script's reply: `{1, now}` admitted, `{0, wait ms}` refused.
fn admission(admitted: i64, value: i64) -> Admission {
    if admitted == 1 {
        Admission::Admitted(Timestamp::from_millis(value))
    } else {
        Admission::Refused(Duration::from_millis(value.max(0) as u64))
    }
}

/// A [`scripts::LIMIT_ADMIT_HOLD`] reply.
fn judged(
    (admitted, which, value): (i64, i64, i64),
    key: &LimitKey,
    places: &[(LimitKey, u32)],
) -> Result<Timestamp, (Limit, Duration)> {
    if admitted == 1 {
        return Ok(Timestamp::from_millis(value));
    }
    // The script names what refused by its index: 0 the rate, `i` the `i`-th place.
    let place = usize::try_from(which - 1).ok().and_then(|i| places.get(i));
    let limit = place.map_or(key.limit(), |(place, _)| place.limit());
    Err((limit, Duration::from_millis(value.max(0) as u64)))
}

#[async_trait]
impl LimitStore for RedisStore {
    #[instrument(level = "debug", skip_all)]
    async fn admit(&self, key: &LimitKey, rate: Rate) -> StoreResult<Admission> {
        let call = scripts::limit_admit(key, rate);
        let (admitted, value, _): (i64, i64, Option<Vec<u8>>) =
            self.conn.script("counting a call", &call).await?;
        Ok(admission(admitted, value))
    }

    #[instrument(level = "debug", skip_all)]
    async fn hold(
        &self,
        key: &LimitKey,
        token: u64,
        cap: u32,
        hold: Duration,
    ) -> StoreResult<Admission> {
        let call = scripts::hold_take(key, token, cap, hold);
        let (admitted, value): (i64, i64) = self.conn.script("holding a place", &call).await?;
        Ok(admission(admitted, value))
    }

    #[instrument(level = "debug", skip_all)]
    async fn admit_reading(
        &self,
        key: &LimitKey,
        rate: Rate,
        feature: Feature,
        user: &UserId,
    ) -> StoreResult<(Admission, Option<LocationEntry>)> {
        if self.conn.is_cluster() {
            // The limit and the record hash to different slots: two calls, sent together.
            let (admitted, entry) = tokio::join!(self.admit(key, rate), self.get(feature, user));
            return Ok((admitted?, entry?));
        }
        let call = scripts::limit_admit_reading(key, rate, feature, user);
        let reply: (i64, i64, Option<Vec<u8>>) = self.conn.script("counting a call", &call).await?;
        let now = Timestamp::from_millis(reply.1);
        let entry = reply
            .2
            .as_deref()
            .and_then(|raw| keys::decode_record(feature, user, raw));
        let entry = entry.filter(|e| !e.deadlines.is_expired(now));
        Ok((admission(reply.0, reply.1), entry))
    }

    #[instrument(level = "debug", skip_all)]
    async fn admit_holding(&self, holding: &Holding<'_>) -> StoreResult<Judged> {
        let (key, places, token) = (holding.key, holding.places, holding.token);
        if !self.conn.is_cluster() {
            let call = scripts::limit_admit_hold(holding);
            let reply = self.conn.script("counting a call", &call).await?;
            return Ok(judged(reply, key, places));
        }
        // On a cluster one script covers the places in the rate's slot (the user's own); each
        // other place is taken first, on its own, and given back if the rest refuses.
        let rate_key = keys::limit_key(key);
        let tag = keys::hash_tag(&rate_key);
        let (own, other): (Vec<_>, Vec<_>) = places
            .iter()
            .cloned()
            .partition(|(place, _)| keys::hash_tag(&keys::limit_key(place)) == tag);
        let mut taken = Vec::new();
        let mut outcome = None;
        for (place, cap) in &other {
            match self.hold(place, token, *cap, holding.hold).await {
                Ok(Admission::Admitted(_)) => taken.push(place),
                Ok(Admission::Refused(wait)) => {
                    outcome = Some(Ok(Err((place.limit(), wait))));
                    break;
                }
                Err(error) => {
                    outcome = Some(Err(error));
                    break;
                }
            }
        }
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                let own = Holding {
                    places: &own,
                    ..*holding
                };
                let call = scripts::limit_admit_hold(&own);
                let reply = self.conn.script("counting a call", &call).await;
                reply.map(|reply| judged(reply, key, own.places))
            }
        };
        if !matches!(outcome, Ok(Ok(_))) {
            for place in taken {
                if let Err(error) = self.release(place, token).await {
                    // It ends by itself at the end of its hold.
                    tracing::warn!(%error, "could not give back a held place");
                }
            }
        }
        outcome
    }

    #[instrument(level = "debug", skip_all)]
    async fn forget(&self, user: &UserId) -> StoreResult<()> {
        // One hash tag (the user's): one DEL on a cluster too.
        let mut cmd = redis::cmd("DEL");
        for key in LimitKey::all_of(user) {
            cmd.arg(keys::limit_key(&key));
        }
        self.conn.query::<i64>("forgetting limits", &cmd).await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn release(&self, key: &LimitKey, token: u64) -> StoreResult<()> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(keys::limit_key(key)).arg(token);
        self.conn.query::<i64>("giving back a place", &cmd).await?;
        Ok(())
    }
}
