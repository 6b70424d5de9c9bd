//! Service rules that need an interleaving the gRPC tests cannot force.

use std::{sync::Arc, time::Duration};

use tonic::async_trait;

use super::{Deps, ServiceError, Vicinity};
use crate::{
    domain::{
        Clock, ConsentRecord, Deadlines, Feature, Gender, Location, ManualClock, NoticeVersion,
        Retention, SnapGrid, Source, Timestamp, UserId,
        nearby::{NearbyRequest, Secret, Tickets},
    },
    storage::{
        ConsentStore, LocationEntry, LocationStore, MemoryStore, NearbyResult, Position,
        StoreError, StoreErrorKind, StoreResult,
    },
};

/// A location store where the user withdraws consent (and the withdrawal purges) after the
/// service checked consent and before its write lands: the race of a slow UpdateLocation
/// against WithdrawConsent.
struct WithdrawnDuringTheWrite {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
}

#[async_trait]
impl LocationStore for WithdrawnDuringTheWrite {
    async fn upsert(&self, position: Position, retention: Retention) -> StoreResult<Deadlines> {
        let user = position.user_id.clone();
        let current = ConsentRecord::undecided(user.clone(), position.feature);
        let withdrawn = current
            .withdraw(self.clock.now(), "w".into())
            .expect("an event");
        self.store.append(withdrawn).await?;
        self.store.clear(&user, &[position.feature]).await?;
        self.store.upsert(position, retention).await
    }

    async fn get(&self, feature: Feature, user: &UserId) -> StoreResult<Option<LocationEntry>> {
        self.store.get(feature, user).await
    }

    async fn leave(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>> {
        self.store.leave(feature, user, retention).await
    }

    async fn clear(&self, user: &UserId, features: &[Feature]) -> StoreResult<u32> {
        self.store.clear(user, features).await
    }

    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>> {
        self.store.nearby(request).await
    }

    async fn purge_expired(&self) -> StoreResult<u32> {
        self.store.purge_expired().await
    }

    async fn now(&self) -> StoreResult<Timestamp> {
        LocationStore::now(self.store.as_ref()).await
    }
}

#[tokio::test]
async fn an_update_racing_a_withdrawal_leaves_no_location_behind() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
    let tickets = Tickets::new(&Secret::from_bytes([3; 32]));
    let store = MemoryStore::start(
        clock.clone(),
        SnapGrid::default(),
        tickets,
        Duration::from_secs(1),
    );
    let svc = Vicinity::new(Deps {
        locations: Arc::new(WithdrawnDuringTheWrite {
            store: store.clone(),
            clock: clock.clone(),
        }),
        consents: store.clone(),
        shakes: store.clone(),
        shake_window: Duration::from_secs(3),
        clock,
        grid: SnapGrid::default(),
        retention: Retention::default(),
        secret: Arc::new(Secret::from_bytes([3; 32])),
    });
    let alice = UserId::parse("alice", "user_id").unwrap();
    let notice = NoticeVersion::parse("2026-01").unwrap();
    svc.grant_consent(&alice, Feature::PeopleNearby, &notice, &Source::default())
        .await
        .unwrap();
    let at = Location::new(39.912_345_678, 116.398_765_432, 5.0).unwrap();

    let updated = svc.update_location(&alice, at, Gender::Female).await;

    assert!(
        matches!(
            updated,
            Err(ServiceError::ConsentRequired(Feature::PeopleNearby))
        ),
        "{updated:?}"
    );
    let stored = store.get(Feature::PeopleNearby, &alice).await.unwrap();
    assert!(stored.is_none(), "a location outlived its consent");
    assert_eq!(store.physical_entries(), 0);
}

/// A location store whose `clear` fails the first `failures` times (a store down when a
/// purge runs).
struct ClearFails {
    store: Arc<MemoryStore>,
    failures: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl LocationStore for ClearFails {
    async fn upsert(&self, position: Position, retention: Retention) -> StoreResult<Deadlines> {
        self.store.upsert(position, retention).await
    }

    async fn get(&self, feature: Feature, user: &UserId) -> StoreResult<Option<LocationEntry>> {
        self.store.get(feature, user).await
    }

    async fn leave(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>> {
        self.store.leave(feature, user, retention).await
    }

    async fn clear(&self, user: &UserId, features: &[Feature]) -> StoreResult<u32> {
        use std::sync::atomic::Ordering;
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::new(StoreErrorKind::Unavailable, "test"));
        }
        self.store.clear(user, features).await
    }

    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>> {
        self.store.nearby(request).await
    }

    async fn purge_expired(&self) -> StoreResult<u32> {
        self.store.purge_expired().await
    }

    async fn now(&self) -> StoreResult<Timestamp> {
        LocationStore::now(self.store.as_ref()).await
    }
}

#[tokio::test]
async fn a_withdrawal_whose_purge_failed_is_finished_by_a_later_sweep() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
    let store = MemoryStore::start(
        clock.clone(),
        SnapGrid::default(),
        Tickets::new(&Secret::from_bytes([3; 32])),
        Duration::from_secs(1),
    );
    let svc = Vicinity::new(Deps {
        locations: Arc::new(ClearFails {
            store: store.clone(),
            failures: 1.into(),
        }),
        consents: store.clone(),
        shakes: store.clone(),
        shake_window: Duration::from_secs(3),
        clock: clock.clone(),
        grid: SnapGrid::default(),
        retention: Retention::default(),
        secret: Arc::new(Secret::from_bytes([3; 32])),
    });
    let alice = UserId::parse("alice", "user_id").unwrap();
    let notice = NoticeVersion::parse("2026-01").unwrap();
    svc.grant_consent(&alice, Feature::PeopleNearby, &notice, &Source::default())
        .await
        .unwrap();
    let at = Location::new(39.9, 116.4, 5.0).unwrap();
    svc.update_location(&alice, at, Gender::Female)
        .await
        .unwrap();

    let withdrawn = svc.withdraw_consent(&alice, Feature::PeopleNearby).await;

    assert!(withdrawn.is_err(), "the purge failed: {withdrawn:?}");
    assert_eq!(store.physical_entries(), 1, "held until the sweep");
    svc.sweep().await.unwrap();
    assert_eq!(
        store.physical_entries(),
        1,
        "a purge owed is left to its call a while"
    );
    clock.advance(super::OWED_GRACE);
    svc.sweep().await.unwrap();
    assert_eq!(store.physical_entries(), 0, "the sweep finished the purge");
    let owed = store.owed_purges(Duration::ZERO, 10).await.unwrap();
    assert!(owed.is_empty(), "settled: {owed:?}");
}
