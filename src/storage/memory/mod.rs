//! The embedded in-memory store, built like mini-redis's `Db`: one std `Mutex` never held
//! across `.await`, a `BTreeSet<(deadline, key)>` of expirations, a purge task woken by
//! `Notify`, and shutdown of that task when the store is dropped.
//!
//! For local use and fast tests: nothing survives a restart, and nothing is shared between
//! processes, so several service nodes need the Redis store.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use crate::domain::nearby::{OrderContext, Plans, Search, Tickets};
use h3o::CellIndex;
use tokio::sync::Notify;
use tonic::async_trait;

mod consent;
mod limits;
mod shake;

use limits::Limits;
use shake::ShakeState;

use super::{
    CLEAR_MARK_TTL, Expired, FENCE_LIFETIME, Fence, LocationEntry, LocationStore, NearbyResult,
    OwedPurge, Position, StoreError, StoreResult,
};
use crate::domain::{
    Clock, ConsentEvent, Deadlines, Feature, Gender, Retention, SnapGrid, Timestamp, UserId,
    nearby::NearbyRequest,
};

type EntryKey = (Feature, UserId);

/// What a cell keeps of each member: enough to filter and rank without another lookup.
#[derive(Debug, Clone, Copy)]
struct Member {
    ticket: u64,
    gender: Gender,
    deadlines: Deadlines,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<EntryKey, LocationEntry>,
    cells: HashMap<(Feature, CellIndex), HashMap<UserId, Member>>,
    expirations: BTreeSet<(Timestamp, Feature, UserId)>,
    consent_history: HashMap<UserId, Vec<ConsentEvent>>,
    owed: BTreeSet<(Timestamp, OwedPurge)>,
    shake: ShakeState,
    limits: Limits,
    /// What was removed at deadlines since `purge_expired` last reported.
    expired: Expired,
    /// Users' People Nearby clear marks ([`Fence`]) and when each was set; dropped
    /// [`CLEAR_MARK_TTL`] after it, as Redis expires them.
    clear_marks: HashMap<UserId, (i64, Timestamp)>,
    /// The last mark given (each clear takes the next).
    last_mark: i64,
    shutdown: bool,
}

impl State {
    fn remove(&mut self, key: &EntryKey) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        self.expirations
            .remove(&(entry.deadlines.purge_at, key.0, key.1.clone()));
        let cell_key = (key.0, entry.position.cell);
        if let Some(members) = self.cells.get_mut(&cell_key) {
            members.remove(&key.1);
            if members.is_empty() {
                self.cells.remove(&cell_key);
            }
        }
        true
    }

    fn insert(&mut self, entry: LocationEntry, ticket: u64) {
        let key = (entry.position.feature, entry.position.user_id.clone());
        self.remove(&key);
        let member = Member {
            ticket,
            gender: entry.position.gender,
            deadlines: entry.deadlines,
        };
        self.expirations
            .insert((entry.deadlines.purge_at, key.0, key.1.clone()));
        self.cells
            .entry((key.0, entry.position.cell))
            .or_default()
            .insert(key.1.clone(), member);
        self.entries.insert(key, entry);
    }

    /// Removes everything due at `now`; returns how many and the next deadline.
    /// Removes at most [`PURGE_BATCH`] entries past their deadline at `now`; returns how many
    /// and the next deadline (at or before `now` when a backlog remains for the next batch).
    fn purge_due(&mut self, now: Timestamp) -> (u32, Option<Timestamp>) {
        let mut purged = 0;
        while let Some((deadline, feature, user)) = self.expirations.first().cloned() {
            if deadline > now || purged == PURGE_BATCH {
                return (purged, Some(deadline));
            }
            self.remove(&(feature, user));
            let lag = (feature == Feature::PeopleNearby).then(|| now.since(deadline));
            self.expired.add(1, lag);
            purged += 1;
        }
        (purged, None)
    }

    /// Removes the Shake state past its end, noting how much for the next report.
    fn purge_shakes(&mut self, now: Timestamp) {
        let purged = self.shake.purge_due(now);
        self.expired.add(purged, None);
    }

    /// The user's clear mark at `now` (0: none, or expired).
    fn clear_mark(&self, user: &UserId, now: Timestamp) -> i64 {
        self.clear_marks
            .get(user)
            .filter(|(_, at)| now.since(*at) < CLEAR_MARK_TTL)
            .map_or(0, |(mark, _)| *mark)
    }

    /// Refuses a write under `fence` at `now` after a clear of `user` since it was read.
    fn check_fence(&self, user: &UserId, fence: Fence, now: Timestamp) -> StoreResult<()> {
        if self.clear_mark(user, now) == fence.mark && now.since(fence.read_at) <= FENCE_LIFETIME {
            Ok(())
        } else {
            Err(StoreError::fenced())
        }
    }

    fn live(&self, key: &EntryKey, now: Timestamp) -> Option<&LocationEntry> {
        self.entries
            .get(key)
            .filter(|e| !e.deadlines.is_expired(now))
    }
}

/// Entries past their deadline removed per hold of the lock (contract §4.5: bounded work): a
/// backlog after a stall goes in batches, and calls get the lock between them.
const PURGE_BATCH: u32 = 4_096;

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
    clock: Arc<dyn Clock>,
    grid: SnapGrid,
    /// First batches of first pages by viewer cell ([`Plans`]).
    plans: Plans,
    tickets: Tickets,
    sweep_interval: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than losing the store, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The embedded store: both a [`LocationStore`] and a [`ConsentStore`].
#[derive(Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    /// Starts a store and its purge task (call inside a tokio runtime). The task checks at
    /// each deadline and at least every `sweep_interval`, and stops when the store is dropped.
    ///
    /// `tickets` give members their place in the in-band order (from the server secret).
    pub fn start(
        clock: Arc<dyn Clock>,
        grid: SnapGrid,
        tickets: Tickets,
        sweep_interval: Duration,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            clock,
            grid,
            plans: Plans::default(),
            tickets,
            sweep_interval,
        });
        tokio::spawn(purge_task(shared.clone()));
        Arc::new(Self { shared })
    }

    /// How many location and Shake entries are physically held (for purge proofs).
    pub fn physical_entries(&self) -> usize {
        let state = self.shared.lock();
        let in_cells: usize = state.cells.values().map(HashMap::len).sum();
        let locations = state
            .entries
            .len()
            .max(in_cells)
            .max(state.expirations.len());
        locations + state.shake.len()
    }

    /// How many limit keys hold state (void state goes with the sweep).
    pub fn limit_keys(&self) -> usize {
        self.shared.lock().limits.len()
    }

    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
    }
}

async fn purge_task(shared: Arc<Shared>) {
    loop {
        let now = shared.clock.now();
        let next = {
            let mut state = shared.lock();
            if state.shutdown {
                return;
            }
            state.purge_shakes(now);
            state.limits.purge_void(now);
            state
                .clear_marks
                .retain(|_, (_, at)| now.since(*at) < CLEAR_MARK_TTL);
            state.purge_due(now).1
        };
        let wait = next
            .map_or(shared.sweep_interval, |at| at.since(now))
            .min(shared.sweep_interval);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.wake.notified() => {}
        }
    }
}

#[async_trait]
impl LocationStore for MemoryStore {
    async fn fence(&self, user: &UserId) -> StoreResult<Fence> {
        let now = self.now();
        let state = self.shared.lock();
        Ok(Fence {
            mark: state.clear_mark(user, now),
            read_at: now,
            seen: std::time::Instant::now(),
        })
    }

    async fn upsert(
        &self,
        position: Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<Deadlines> {
        let now = self.now();
        let deadlines = retention.deadlines(now);
        let mut state = self.shared.lock();
        state.check_fence(&position.user_id, fence, now)?;
        let earliest = state.expirations.first().map(|e| e.0);
        let ticket = self.shared.tickets.of(&position.user_id);
        state.insert(
            LocationEntry {
                position,
                deadlines,
                left: false,
            },
            ticket,
        );
        drop(state);
        if earliest.is_none_or(|at| deadlines.purge_at < at) {
            self.shared.wake.notify_one();
        }
        Ok(deadlines)
    }

    async fn get(&self, feature: Feature, user: &UserId) -> StoreResult<Option<LocationEntry>> {
        let now = self.now();
        let state = self.shared.lock();
        Ok(state.live(&(feature, user.clone()), now).cloned())
    }

    async fn leave(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>> {
        let now = self.now();
        let mut state = self.shared.lock();
        let Some(entry) = state.live(&(feature, user.clone()), now).cloned() else {
            return Ok(None);
        };
        let deadlines = retention.deadlines(now);
        let ticket = self.shared.tickets.of(user);
        state.insert(
            LocationEntry {
                deadlines,
                left: true,
                ..entry
            },
            ticket,
        );
        Ok(Some(deadlines))
    }

    async fn clear(&self, user: &UserId, features: &[Feature]) -> StoreResult<u32> {
        let now = self.now();
        let mut state = self.shared.lock();
        if features.contains(&Feature::PeopleNearby) {
            state.last_mark += 1;
            let mark = state.last_mark;
            state.clear_marks.insert(user.clone(), (mark, now));
        }
        let removed = features
            .iter()
            .filter(|f| state.remove(&(**f, user.clone())))
            .count();
        Ok(removed as u32)
    }

    /// The viewer's own entry is read under the lock, then the search runs as `nearby_at`.
    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>> {
        let now = self.now();
        let own = (Feature::PeopleNearby, request.viewer.clone());
        let own_cell = {
            let state = self.shared.lock();
            state
                .live(&own, now)
                .filter(|e| !e.left)
                .map(|e| e.position.cell)
        };
        match own_cell {
            Some(cell) => Ok(Some(self.nearby_at(request, cell, now).await?)),
            None => Ok(None),
        }
    }

    /// The search runs on a blocking thread, not on the runtime's workers (a far search is a
    /// few milliseconds of CPU); see [`search`].
    async fn nearby_at(
        &self,
        request: &NearbyRequest,
        own_cell: CellIndex,
        now: Timestamp,
    ) -> StoreResult<NearbyResult> {
        let shared = self.shared.clone();
        let request = request.clone();
        tokio::task::spawn_blocking(move || search(&shared, &request, own_cell, now))
            .await
            .map_err(|e| StoreError::unfinished(&e, "searching"))
    }

    async fn purge_expired(&self) -> StoreResult<Expired> {
        let now = self.now();
        self.shared.plans.expire(OrderContext::epoch_at(now));
        self.shared.lock().purge_shakes(now);
        while self.shared.lock().limits.purge_void(now) {}
        loop {
            let mut state = self.shared.lock();
            let (_, next) = state.purge_due(now);
            if next.is_none_or(|at| at > now) {
                return Ok(std::mem::take(&mut state.expired));
            }
        }
    }

    async fn earliest_deadline(&self) -> StoreResult<Option<Timestamp>> {
        let state = self.shared.lock();
        let nearby = state.expirations.first().map(|(deadline, _, _)| *deadline);
        Ok(nearby.into_iter().chain(state.shake.earliest()).min())
    }

    async fn now(&self) -> StoreResult<Timestamp> {
        Ok(self.now())
    }
}

/// One People Nearby search on the embedded store ([`Search::run`]). The walk over cells (the
/// CPU work) runs without the lock; each batch of bands is ranked under it, all bands read so
/// far at once, so one page is one consistent view and the lock is held for at most
/// `MAX_CELLS_PER_CALL` cell lookups and their members. The viewer is in `own_cell` at `now`
/// (read by the caller).
fn search(
    shared: &Shared,
    request: &NearbyRequest,
    own_cell: CellIndex,
    now: Timestamp,
) -> NearbyResult {
    let (search, _) = Search::start(request.query(own_cell, now), &shared.grid, &shared.plans);
    let (query, page) = search.run(
        || shared.lock(),
        |state, cell, sink| {
            let Some(members) = state.cells.get(&(Feature::PeopleNearby, cell)) else {
                return;
            };
            for (user, member) in members {
                if member.deadlines.is_visible(now) {
                    let last_active = member.deadlines.last_active;
                    sink.offer(user, member.ticket, member.gender, last_active);
                }
            }
        },
    );
    NearbyResult::of(&query, page, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{ManualClock, nearby::Secret},
        storage::conformance,
    };

    /// A backlog of due entries is purged in batches of `PURGE_BATCH`, the
    /// lock released between them, and all of it goes.
    #[test]
    fn a_backlog_is_purged_in_bounded_batches() {
        let grid = SnapGrid::default();
        let retention = Retention::default();
        let mut state = State::default();
        let backlog = PURGE_BATCH as usize * 2 + 5;
        for i in 0..backlog {
            let user = UserId::parse(&format!("u{i}"), "user_id").unwrap();
            let at = crate::domain::Coordinates::new(39.9, 116.4).unwrap();
            let position = Position {
                feature: Feature::PeopleNearby,
                user_id: user,
                cell: grid.snap(at),
                gender: Gender::Unspecified,
            };
            let deadlines = retention.deadlines(Timestamp::from_millis(0));
            let entry = LocationEntry {
                position,
                deadlines,
                left: false,
            };
            state.insert(entry, i as u64);
        }
        let later = Timestamp::from_millis(0).plus(retention.window() * 2);
        let (first, next) = state.purge_due(later);
        assert_eq!(first, PURGE_BATCH);
        assert!(
            next.is_some_and(|at| at <= later),
            "a backlog remains: {next:?}"
        );
        let (second, _) = state.purge_due(later);
        let (third, next) = state.purge_due(later);
        assert_eq!((second, third, next), (PURGE_BATCH, 5, None));
        assert_eq!(state.entries.len(), 0);
    }

    /// The embedded store on a manual clock, for one conformance check.
    async fn fixture() -> (conformance::Fixture, ()) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        let store = MemoryStore::start(
            clock.clone(),
            SnapGrid::default(),
            Tickets::new(&Secret::from_bytes([9; 32])),
            Duration::from_millis(20),
        );
        let probe = {
            let store = store.clone();
            move || {
                let store = store.clone();
                Box::pin(async move { Ok(store.physical_entries()) }) as conformance::ProbeFuture
            }
        };
        let fixture = conformance::Fixture {
            locations: store.clone(),
            consents: store.clone(),
            shakes: store.clone(),
            limits: store.clone(),
            advance: Box::new(move |by| {
                clock.advance(by);
                Box::pin(async {})
            }),
            physical_entries: Box::new(probe),
            sweep_bound: Duration::from_secs(2),
        };
        (fixture, ())
    }

    mod conformance_on_the_memory_store {
        crate::storage::conformance::conformance_tests!(super::fixture);
    }

    #[tokio::test]
    async fn dropping_the_store_stops_its_purge_task() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let tickets = Tickets::new(&Secret::from_bytes([9; 32]));
        let store = MemoryStore::start(
            clock,
            SnapGrid::default(),
            tickets,
            Duration::from_secs(3600),
        );
        let weak = Arc::downgrade(&store.shared);
        drop(store);
        for _ in 0..100 {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the purge task still holds the store");
    }
}
