//! Storage: the three store traits (locations, consents, shakes) with their contracts, and
//! their backends.
//!
//! Location data and consent records live in separate stores (contract §4.2: location data must
//! not persist, consent records must), so they are separate traits; one backend may implement
//! both. Every backend passes [`conformance`].

#[cfg(test)]
pub(crate) mod conformance;
mod error;
pub mod memory;
pub mod redis;

use std::time::{Duration, Instant};

use h3o::CellIndex;
use tonic::async_trait;

pub use error::{StoreError, StoreErrorKind, StoreResult};

/// What sweeps removed at deadlines. Each People Nearby entry's lag behind its deadline also
/// goes into `vicinity_purge_lag_seconds` where it is deleted (every one, however many).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Entries deleted: People Nearby entries and Shake state.
    pub entries: u32,
    /// The largest lag behind a deadline among them (People Nearby entries).
    pub worst_lag: Duration,
}

impl Expired {
    /// Adds `entries` deletions, and the lag of one People Nearby entry if given (observed
    /// into the purge-lag histogram here).
    pub fn add(&mut self, entries: u32, lag: Option<Duration>) {
        self.entries = self.entries.saturating_add(entries);
        if let Some(lag) = lag {
            crate::telemetry::metrics::purge_lag(lag);
            self.worst_lag = self.worst_lag.max(lag);
        }
    }

    /// Both reports together.
    pub fn merge(self, other: Expired) -> Self {
        Self {
            entries: self.entries.saturating_add(other.entries),
            worst_lag: self.worst_lag.max(other.worst_lag),
        }
    }
}
pub use memory::MemoryStore;

use crate::domain::{
    ConsentEvent, ConsentRecord, Deadlines, Feature, Gender, Retention, Timestamp, UserId,
    limits::Rate,
    nearby::{NearbyQuery, NearbyRequest, OrderContext, Page},
    shake::{PendingShake, ShakeMatch, ShakePair},
};

/// How long after its [`Fence`] was read a location write may still land: a write that runs
/// later is refused as fenced, whatever the mark (the caller reads a new fence).
pub const FENCE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a user's clear mark lives after the clear that set it: longer than
/// [`FENCE_LIFETIME`], so that every write that read the mark before that clear still finds it
/// changed (a mark that expired would read as none again).
pub const CLEAR_MARK_TTL: Duration = Duration::from_secs(120);

/// How long a Shake pairing waits for its pending side to collect it (both stores; the Redis
/// scripts get it in their prelude).
pub const SHAKE_UNCOLLECTED: Duration = Duration::from_secs(10);
/// How long a Shake Clear's tombstone keeps late matches of the cleared user from being
/// recorded: longer than any call can run (its deadline is capped at 30 s) plus a store call.
pub const SHAKE_TOMBSTONE: Duration = Duration::from_secs(120);
/// Shake history entries kept per user at most (the oldest go first): bounds every read and
/// every Clear of a partner.
pub const SHAKE_HISTORY_CAP: usize = 100;

/// What a location write is admitted under (docs/decisions.md, "A write fenced by every
/// clear since its consent check"): the user's clear mark, read at some time before the
/// service checked consent (not necessarily just before: "A fence this node read before").
/// Every clear of the user's People Nearby entry sets a new mark in the same atomic
/// step as its deletion, and a write whose fence no longer matches, or is older than
/// [`FENCE_LIFETIME`], writes nothing (`StoreErrorKind::Fenced`). So a write that lands after
/// a withdrawal's purge is refused by the store itself, without the node that sent it
/// checking consent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The user's clear mark when it was read (0: none).
    pub mark: i64,
    /// When it was read, by the store's clock.
    pub read_at: Timestamp,
    /// When this node had the read's reply, by its own clock (how long it is reused counts
    /// from it).
    pub seen: Instant,
}

/// A position to store for a user in a feature: the snapped cell and nothing finer (contract §4.3
/// data minimisation). The store never sees a raw position.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// Whose.
    pub user_id: UserId,
    /// Which feature's entry.
    pub feature: Feature,
    /// Snapped to the grid: all that is kept of where the user is.
    pub cell: CellIndex,
    /// The gender the user shows.
    pub gender: Gender,
}

/// A user's stored entry in one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationEntry {
    /// What was stored.
    pub position: Position,
    /// Its deadlines.
    pub deadlines: Deadlines,
    /// Whether the user left the feature (the entry then waits for `purge_at`).
    pub left: bool,
}

/// The outcome of a nearby search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyResult {
    /// The page.
    pub page: Page,
    /// The order epoch used (for the next page token).
    pub epoch: u64,
    /// The current order epoch by the store's clock (to judge a page token's age).
    pub current_epoch: u64,
    /// The viewer cell used (for the next page token).
    pub viewer_cell: CellIndex,
}

impl NearbyResult {
    /// The result of running `query` at `now` (store clock).
    pub fn of(query: &NearbyQuery, page: Page, now: Timestamp) -> Self {
        Self {
            page,
            epoch: query.order.epoch,
            current_epoch: OrderContext::epoch_at(now),
            viewer_cell: query.viewer_cell(),
        }
    }
}

/// Where location entries live.
///
/// Contract, for every backend:
/// - Deadlines are computed from the store's own clock (one clock for every service node), as
///   `Retention::deadlines(now)`, and are absolute.
/// - An entry past its `purge_at` is never returned, even before it is physically gone, and is
///   physically removed within the sweep interval of `purge_at` without any call.
/// - Clearing is immediate and physical; clearing what is not there is `Ok(0)`.
#[async_trait]
pub trait LocationStore: Send + Sync + 'static {
    /// The user's clear mark for People Nearby, to admit writes under ([`Fence`]): read now,
    /// or one this node read before (a single Redis reuses them, so a write under it may be
    /// refused for a clear another node ran since; the service then takes
    /// [`LocationStore::fresh_fence`]).
    async fn fence(&self, user: &UserId) -> StoreResult<Fence>;

    /// [`LocationStore::fence`] read now, never one read before.
    async fn fresh_fence(&self, user: &UserId) -> StoreResult<Fence> {
        self.fence(user).await
    }

    /// Stores `position` as the user's entry in its feature (entering the feature, or
    /// replacing the previous position and clearing `left`), with deadlines from now, unless
    /// the user was cleared since `fence` was read or it is older than [`FENCE_LIFETIME`]:
    /// then nothing changes and the error is `StoreErrorKind::Fenced`.
    async fn upsert(
        &self,
        position: Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<Deadlines>;

    /// [`LocationStore::upsert`] under a fence read now: for a write that no consent check
    /// precedes (tests, benchmarks), so only a clear racing the write itself can fence it.
    async fn upsert_now(&self, position: Position, retention: Retention) -> StoreResult<Deadlines> {
        let fence = self.fresh_fence(&position.user_id).await?;
        self.upsert(position, retention, fence).await
    }

    /// UpdateLocation's write with its limits in one atomic step (one round trip): counts one
    /// call under the user's update rate and writes, unless the rate refuses or the previous
    /// entry needs a jump check ([`Limited`]); a refusal counts and writes nothing.
    /// `Ok(None)`: this backend has no such step, nothing was done, and the caller counts and
    /// checks first ([`LimitStore`]), then writes with [`LocationStore::upsert`]. Fenced as
    /// [`LocationStore::upsert`] is, before anything is counted.
    async fn upsert_limited(
        &self,
        _position: &Position,
        _retention: Retention,
        _limits: &UpdateLimits,
        _fence: Fence,
    ) -> StoreResult<Option<Limited>> {
        Ok(None)
    }

    /// The user's entry in `feature`, left or not; `None` when absent or expired.
    async fn get(&self, feature: Feature, user: &UserId) -> StoreResult<Option<LocationEntry>>;

    /// Marks the user as having left `feature`: last activity now, deadlines from now. The
    /// entry stays visible to others until `visible_until`. `None` when not in the feature.
    async fn leave(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>>;

    /// Physically deletes the user's entries in `features` at once; returns how many existed.
    /// Clearing People Nearby sets the user's clear mark in the same step ([`Fence`]).
    async fn clear(&self, user: &UserId, features: &[Feature]) -> StoreResult<u32>;

    /// People Nearby search for a viewer with a live, not-left entry: `None` when the viewer
    /// has none (reciprocity). Only visible, unexpired entries of other users are returned.
    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>>;

    /// [`LocationStore::nearby`] for a viewer whose live, not-left entry in `own_cell` was
    /// read at `now` (store clock) by the caller, with the list rate in one round trip
    /// ([`LimitStore::admit_reading`]).
    async fn nearby_at(
        &self,
        request: &NearbyRequest,
        own_cell: CellIndex,
        now: Timestamp,
    ) -> StoreResult<NearbyResult>;

    /// Physically removes every entry past its `purge_at`; returns what was removed at a
    /// deadline since the last call: by this call, or by the backend on its own (the embedded
    /// store's purge task). Calling it is always safe, from any number of nodes; on Redis each
    /// node reports what its own calls removed.
    async fn purge_expired(&self) -> StoreResult<Expired>;

    /// The earliest deadline in the store's own purge schedules (`None`: nothing scheduled):
    /// at or before now, something is overdue (the `vicinity_oldest_overdue_entry_age_seconds`
    /// gauge). The embedded store's: every People Nearby entry and every Shake entry (pending
    /// shakes, uncollected pairings, histories). Redis's: the heads of its sweep schedules
    /// scored by deadlines, People Nearby partitions (`vc:n:parts`, whose score is the
    /// partition's earliest deadline) and Shake's pending shakes, mailboxes and histories
    /// (`keys::SHAKE_SCHEDULES`); not the record shards', which a cluster visits by a budget.
    async fn earliest_deadline(&self) -> StoreResult<Option<Timestamp>>;

    /// The store's clock.
    async fn now(&self) -> StoreResult<Timestamp>;
}

/// Where consent records live. They hold no location and are the only data that outlive the
/// retention window.
///
/// Contract: `current` of a feature with no event is an undecided record; `history` is in
/// append order; `forget` deletes every record of the user.
#[async_trait]
pub trait ConsentStore: Send + Sync + 'static {
    /// The user's current record for `feature`.
    async fn current(&self, user: &UserId, feature: Feature) -> StoreResult<ConsentRecord>;

    /// The user's current record for every feature, in [`Feature::ALL`] order.
    async fn all_current(&self, user: &UserId) -> StoreResult<Vec<ConsentRecord>>;

    /// Every event of the user, oldest first.
    async fn history(&self, user: &UserId) -> StoreResult<Vec<ConsentEvent>>;

    /// For each of `users`, whether their current consent for `feature` is GRANTED (one round
    /// trip for a whole page of users).
    async fn granted_among(&self, feature: Feature, users: &[UserId]) -> StoreResult<Vec<bool>>;

    /// [`ConsentStore::granted_among`] for what a read shows (the users a list returns, the
    /// viewer's own check): a store may answer from a cache that every change reaches within
    /// a bound it documents (Redis: `granted_cache::STALENESS`, normally microseconds). A
    /// check that lets a write in uses `granted_among` (a shake, a leave) or
    /// [`ConsentStore::granted_to_write`] (an update), so nothing is stored after a withdrawal;
    /// a withdrawal purges before it answers OK, so a cached GRANTED finds nothing of a
    /// withdrawn user to show.
    async fn granted_to_show(&self, feature: Feature, users: &[UserId]) -> StoreResult<Vec<bool>> {
        self.granted_among(feature, users).await
    }

    /// Whether `user`'s consent for `feature` is GRANTED, for the check that admits a location
    /// write whose fence this node had at `fenced` ([`Fence::seen`]): read from the store, or
    /// answered by a cache only from what it heard from the store after `fenced` (so the state
    /// held after the fence was read: docs/decisions.md, "A cached GRANTED admits a write
    /// fenced before the last heartbeat").
    async fn granted_to_write(
        &self,
        feature: Feature,
        user: &UserId,
        _fenced: Instant,
    ) -> StoreResult<bool> {
        let granted = self
            .granted_among(feature, std::slice::from_ref(user))
            .await?;
        Ok(granted.first().copied().unwrap_or(false))
    }

    /// Appends `event` to the history and makes it the current record of its feature.
    async fn append(&self, event: ConsentEvent) -> StoreResult<()>;

    /// Deletes every record of the user; returns how many events were deleted.
    async fn forget(&self, user: &UserId) -> StoreResult<u32>;

    /// Records, durably and before a purge starts, that `user`'s data in `feature` is owed a
    /// purge (contract §4.5: purges finish). Returns the record, to settle once the purge is done;
    /// until then a sweep finds it with [`ConsentStore::owed_purges`] and purges again. Holds
    /// a user id and a feature, never a location.
    async fn owe_purge(&self, user: &UserId, feature: Feature) -> StoreResult<OwedPurge>;

    /// Purges owed for at least `age` (store clock), oldest first, at most `limit`.
    async fn owed_purges(&self, age: Duration, limit: usize) -> StoreResult<Vec<OwedPurge>>;

    /// Removes one owed purge (its purge is done); settling a settled one is `Ok`.
    async fn settle_purge(&self, owed: &OwedPurge) -> StoreResult<()>;

    /// Whether the store answers.
    async fn ping(&self) -> StoreResult<()>;
}

/// A purge that is owed: whose data, in which feature, and a token that tells two owed purges
/// of the same data apart (each purge settles only its own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwedPurge {
    /// Whose data.
    pub user: UserId,
    /// Which feature's.
    pub feature: Feature,
    /// Unique per owed purge.
    pub token: u64,
}

/// What became of a shake on arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShakeOutcome {
    /// Paired at once with a pending shake.
    Paired(ShakePair),
    /// Waiting for a partner until `expires`.
    Pending(PendingShake),
    /// Refused: the user's Shake was cleared (a Clear, a withdrawal, an erasure) since the
    /// mark the call read; nothing was paired or left pending.
    Cleared,
}

/// One shake to pair or to leave pending ([`ShakeStore::shake`]).
#[derive(Debug, Clone, Copy)]
pub struct NewShake<'a> {
    /// The shake's id, new for every call.
    pub id: u64,
    /// Who shakes.
    pub user: &'a UserId,
    /// The shaker's snapped cell.
    pub cell: CellIndex,
    /// How long it waits for a partner (store clock).
    pub window: Duration,
    /// What [`ShakeStore::clear_mark`] read before the caller checked consent.
    pub mark: i64,
}

/// Where Shake keeps pending shakes and match history (contract §1, §3).
///
/// Contract, for every backend:
/// - Pairing is atomic across every service node sharing the store: each shake is paired at
///   most once, and if A is paired with B, B is paired with A (B learns it from
///   `await_partner` or `withdraw`).
/// - A pending shake holds the user's snapped cell only until it is paired, withdrawn or
///   expired, and is physically removed within the sweep interval of expiring.
/// - History entries are purged at `matched_at + retention`; an entry past it is never
///   returned.
#[async_trait]
pub trait ShakeStore: Send + Sync + 'static {
    /// Pairs a shake by `user` in `cell` with the nearest unexpired pending shake of another
    /// user (ties: the earliest), or leaves it pending for `window` (store clock).
    ///
    /// Its `mark` is what [`ShakeStore::clear_mark`] read before the caller checked consent: if
    /// the user's Shake has been cleared since (a withdrawal that may have answered OK
    /// already), the shake is refused ([`ShakeOutcome::Cleared`]) in the same atomic step
    /// that would pair it or leave it pending.
    async fn shake(&self, shake: &NewShake<'_>) -> StoreResult<ShakeOutcome>;

    /// A mark that every Clear of `user`'s Shake changes (it only grows while the Clear's
    /// tombstone lives, and is never 0 after a Clear): 0 when no Clear is remembered.
    async fn clear_mark(&self, user: &UserId) -> StoreResult<i64>;

    /// Waits up to `wait` for a partner of `pending`, then withdraws it. A pairing that
    /// raced the withdrawal is returned, never lost.
    async fn await_partner(
        &self,
        pending: &PendingShake,
        wait: Duration,
    ) -> StoreResult<Option<ShakePair>>;

    /// Withdraws `pending` at once (its caller gave up); returns a pairing that raced it.
    async fn withdraw(&self, pending: &PendingShake) -> StoreResult<Option<ShakePair>>;

    /// Adds a match to `user`'s history, purged at `matched_at + retention`.
    async fn record_match(
        &self,
        user: &UserId,
        matched: &ShakeMatch,
        retention: Retention,
    ) -> StoreResult<()>;

    /// `user`'s unexpired matches, oldest first.
    async fn history(&self, user: &UserId) -> StoreResult<Vec<ShakeMatch>>;

    /// Withdraws `user`'s pending shakes; history stays until its deadlines. Returns when the
    /// last history entry will be purged, if there is any.
    async fn leave_shake(&self, user: &UserId) -> StoreResult<Option<Timestamp>>;

    /// Deletes everything Shake holds about `user` (pending shakes and history) at once;
    /// returns how many entries existed.
    async fn clear_shake(&self, user: &UserId) -> StoreResult<u32>;
}

/// An abuse limit (contract §4.3), by the name its refusals carry: the `limit` of a
/// `RATE_LIMITED` error and of `vicinity_rate_limit_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// UpdateLocation calls per user.
    Updates,
    /// Fresh starts per user (updates with no live entry while the jump cap is on).
    Starts,
    /// ListNearby calls per user (each page counts).
    Lists,
    /// Shake calls per user.
    Shakes,
    /// Pending shakes per user.
    PendingShakes,
    /// Calls per API key (counted in each node's memory, not in the store).
    KeyCalls,
    /// Pending shakes of every user an API key calls for.
    KeyPendingShakes,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 7] = [
        Limit::Updates,
        Limit::Starts,
        Limit::Lists,
        Limit::Shakes,
        Limit::PendingShakes,
        Limit::KeyCalls,
        Limit::KeyPendingShakes,
    ];

    /// The limit's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Limit::Updates => "updates",
            Limit::Starts => "starts",
            Limit::Lists => "lists",
            Limit::Shakes => "shakes",
            Limit::PendingShakes => "pending_shakes",
            Limit::KeyCalls => "key_calls",
            Limit::KeyPendingShakes => "key_pending_shakes",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a limit counts (contract §4.3): state kept in the location store, so a limit holds across
/// every service node. Holds user ids and API key names, never a location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKey {
    /// A user's UpdateLocation calls.
    Updates(UserId),
    /// A user's fresh starts (updates with no live entry while the jump cap is on). Not
    /// among [`LimitKey::all_of`]: an erasure must not reset it (it would be a way around the
    /// cap); it holds a time, no location, and ends with its period (an hour by default).
    Starts(UserId),
    /// A user's ListNearby calls (each page counts).
    Lists(UserId),
    /// A user's Shake calls.
    Shakes(UserId),
    /// A user's pending shakes.
    PendingShakes(UserId),
    /// The pending shakes of every user an API key calls for (by the key's name).
    KeyPendingShakes(String),
}

impl LimitKey {
    /// The limit this key counts for.
    pub fn limit(&self) -> Limit {
        match self {
            LimitKey::Updates(_) => Limit::Updates,
            LimitKey::Starts(_) => Limit::Starts,
            LimitKey::Lists(_) => Limit::Lists,
            LimitKey::Shakes(_) => Limit::Shakes,
            LimitKey::PendingShakes(_) => Limit::PendingShakes,
            LimitKey::KeyPendingShakes(_) => Limit::KeyPendingShakes,
        }
    }

    /// Every key that names `user`.
    pub fn all_of(user: &UserId) -> [LimitKey; 4] {
        [
            LimitKey::Updates(user.clone()),
            LimitKey::Lists(user.clone()),
            LimitKey::Shakes(user.clone()),
            LimitKey::PendingShakes(user.clone()),
        ]
    }
}

/// UpdateLocation's limits (contract §4.3), for a backend that checks them in the write itself
/// ([`LocationStore::upsert_limited`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateLimits {
    /// The user's update rate.
    pub rate: Rate,
    /// Cells under which a previous entry passes the jump cap without a check (see
    /// `JumpCap::surely_allowed_parents`); `None`: no check (the cap is off, or the caller
    /// judged the jump already).
    pub near: Option<std::sync::Arc<[CellIndex]>>,
    /// The user's rate of fresh starts, counted when there is no live previous entry
    /// (`None`: the jump cap is off).
    pub starts: Option<Rate>,
}

/// What a limited write did.
#[derive(Debug, Clone, PartialEq)]
pub enum Limited {
    /// Counted and written.
    Written(Deadlines),
    /// Refused by `limit` ([`Limit::Updates`], or [`Limit::Starts`] for a fresh start);
    /// nothing was counted or written. Allowed again after `retry_after`.
    Refused {
        /// The limit that refused.
        limit: Limit,
        /// How long until it allows the call.
        retry_after: Duration,
    },
    /// Nothing was counted or written: the previous entry lies outside `near`, so the caller
    /// judges the jump (at `now`, store clock) and writes again without the check.
    Check {
        /// The user's live previous entry.
        previous: LocationEntry,
        /// The store's time.
        now: Timestamp,
    },
}

/// A limit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Allowed, at this time by the store's clock; the call was counted.
    Admitted(Timestamp),
    /// Refused; nothing was counted. Allowed again after this long at the earliest.
    Refused(Duration),
}

/// One call counted against a rate that also takes places ([`LimitStore::admit_holding`]).
#[derive(Debug, Clone, Copy)]
pub struct Holding<'a> {
    /// The rate's key.
    pub key: &'a LimitKey,
    /// The rate the call counts against.
    pub rate: Rate,
    /// Each place to take: its key and how many places it has.
    pub places: &'a [(LimitKey, u32)],
    /// Who holds the places taken.
    pub token: u64,
    /// How long they are held at most.
    pub hold: Duration,
}

/// A [`Holding`] judged: the store's time when admitted, or the limit that refused and how
/// long until it would admit.
pub type Judged = Result<Timestamp, (Limit, Duration)>;

/// Where limits keep their state: one round trip per check, atomic per key, on the store's
/// clock. State goes by itself once void (a rate's within its period, a hold at its end).
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Counts one call against `rate` under `key`, or refuses it (GCRA, see [`Rate::judge`]).
    async fn admit(&self, key: &LimitKey, rate: Rate) -> StoreResult<Admission>;

    /// Takes one of `cap` places under `key` for `token` until `hold` from now, or refuses
    /// when all are taken (the wait is until the first one ends).
    async fn hold(
        &self,
        key: &LimitKey,
        token: u64,
        cap: u32,
        hold: Duration,
    ) -> StoreResult<Admission>;

    /// Gives back `token`'s place under `key` before its end (giving back twice is `Ok`).
    async fn release(&self, key: &LimitKey, token: u64) -> StoreResult<()>;

    /// Counts one call against the `holding`'s rate under its key and takes a place under
    /// each of its places (key and cap) for its token until its hold from now, all or
    /// nothing: a refusal counts nothing and takes nothing, and names the limit that refused
    /// (when several places are full, any one of them).
    async fn admit_holding(&self, holding: &Holding<'_>) -> StoreResult<Judged>;

    /// Deletes every limit state of `user` (ForgetUser: their ids go with them).
    async fn forget(&self, user: &UserId) -> StoreResult<()>;

    /// [`LimitStore::admit`], and when admitted, `user`'s unexpired entry in `feature` (what
    /// [`LocationStore::get`] answers), in one round trip where the backend can (the jump
    /// cap's read).
    async fn admit_reading(
        &self,
        key: &LimitKey,
        rate: Rate,
        feature: Feature,
        user: &UserId,
    ) -> StoreResult<(Admission, Option<LocationEntry>)>;
}
