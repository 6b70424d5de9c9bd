//! Service rules that need an interleaving the gRPC tests cannot force.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use tonic::async_trait;

use super::{Deps, ServiceError, Vicinity};
use crate::{
    domain::shake::{PendingShake, ShakeMatch, ShakePair},
    domain::{
        Clock, ConsentRecord, Deadlines, Feature, Gender, Location, ManualClock, NoticeVersion,
        Retention, SnapGrid, Source, Timestamp, UserId,
        limits::Policy,
        nearby::{NearbyRequest, Secret, Tickets},
    },
    storage::{
        ConsentStore, Expired, Fence, LocationEntry, LocationStore, MemoryStore, NearbyResult,
        NewShake, Position, ShakeOutcome, ShakeStore, StoreError, StoreErrorKind, StoreResult,
    },
};

/// The embedded store with faults injected into the location side.
struct Faulty {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    /// The user withdraws consent (and the withdrawal purges) after the service checked
    /// consent and before its write lands: the race of a slow UpdateLocation against
    /// WithdrawConsent.
    withdraw_during_write: bool,
    /// `clear` fails this many times first (a store down when a purge runs).
    clear_failures: AtomicU32,
    /// `upsert` writes, then answers with a timeout (a reply lost to a paused store).
    lose_write_reply: bool,
    /// `upsert` writes, then its node dies (the task panics) before anything else runs.
    die_after_write: bool,
}

#[async_trait]
impl LocationStore for Faulty {
    async fn fence(&self, user: &UserId) -> StoreResult<Fence> {
        self.store.fence(user).await
    }

    async fn upsert(
        &self,
        position: Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<Deadlines> {
        if self.withdraw_during_write {
            let user = position.user_id.clone();
            let current = ConsentRecord::undecided(user.clone(), position.feature);
            let withdrawn = current
                .withdraw(self.clock.now(), "w".into())
                .expect("an event");
            self.store.append(withdrawn).await?;
            self.store.clear(&user, &[position.feature]).await?;
        }
        let written = self.store.upsert(position, retention, fence).await;
        assert!(!self.die_after_write, "the node died after its write");
        if self.lose_write_reply {
            return Err(StoreError::new(StoreErrorKind::Timeout, "test"));
        }
        written
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
        let fail = self
            .clear_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::new(StoreErrorKind::Unavailable, "test"));
        }
        self.store.clear(user, features).await
    }

    async fn nearby(&self, request: &NearbyRequest) -> StoreResult<Option<NearbyResult>> {
        self.store.nearby(request).await
    }

    async fn nearby_at(
        &self,
        request: &NearbyRequest,
        own_cell: h3o::CellIndex,
        now: Timestamp,
    ) -> StoreResult<NearbyResult> {
        self.store.nearby_at(request, own_cell, now).await
    }

    async fn purge_expired(&self) -> StoreResult<Expired> {
        self.store.purge_expired().await
    }

    async fn earliest_deadline(&self) -> StoreResult<Option<Timestamp>> {
        self.store.earliest_deadline().await
    }

    async fn now(&self) -> StoreResult<Timestamp> {
        LocationStore::now(self.store.as_ref()).await
    }
}

/// A service on the embedded store whose location side is `Faulty` with these faults;
/// returns it with the store and its clock.
fn service(
    withdraw_during_write: bool,
    clear_failures: u32,
) -> (Vicinity, Arc<MemoryStore>, Arc<ManualClock>) {
    service_with(withdraw_during_write, clear_failures, false)
}

/// [`service`], and with `lose_write_reply` every write's reply is lost after it landed.
fn service_with(
    withdraw_during_write: bool,
    clear_failures: u32,
    lose_write_reply: bool,
) -> (Vicinity, Arc<MemoryStore>, Arc<ManualClock>) {
    service_dying(
        withdraw_during_write,
        clear_failures,
        lose_write_reply,
        false,
    )
}

/// [`service_with`], and with `die_after_write` the node dies right after each write.
fn service_dying(
    withdraw_during_write: bool,
    clear_failures: u32,
    lose_write_reply: bool,
    die_after_write: bool,
) -> (Vicinity, Arc<MemoryStore>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
    let store = MemoryStore::start(
        clock.clone(),
        SnapGrid::default(),
        Tickets::new(&Secret::from_bytes([3; 32])),
        Duration::from_secs(1),
    );
    let svc = Vicinity::new(Deps {
        locations: Arc::new(Faulty {
            store: store.clone(),
            clock: clock.clone(),
            withdraw_during_write,
            clear_failures: clear_failures.into(),
            lose_write_reply,
            die_after_write,
        }),
        ..deps_on(&store, &clock)
    });
    (svc, store, clock)
}

/// Every dependency on the embedded `store`, without faults.
fn deps_on(store: &Arc<MemoryStore>, clock: &Arc<ManualClock>) -> Deps {
    Deps {
        locations: store.clone(),
        consents: store.clone(),
        shakes: store.clone(),
        limits: store.clone(),
        policy: Policy::default(),
        shake_window: Duration::from_secs(3),
        clock: clock.clone(),
        grid: SnapGrid::default(),
        retention: Retention::default(),
        secret: Arc::new(Secret::from_bytes([3; 32])),
        receipts: None,
        places: Arc::default(),
        tasks: Default::default(),
    }
}

/// Alice, with GRANTED consent to each of `features` on `svc`.
async fn alice_consenting(svc: &Vicinity, features: &[Feature]) -> UserId {
    let alice = UserId::parse("alice", "user_id").unwrap();
    let notice = NoticeVersion::parse("2026-01").unwrap();
    for feature in features {
        svc.grant_consent(&alice, *feature, &notice, &Source::default())
            .await
            .unwrap();
    }
    alice
}

/// Alice, consenting to People Nearby and sharing a position.
async fn alice_sharing(svc: &Vicinity) -> UserId {
    let alice = alice_consenting(svc, &[Feature::PeopleNearby]).await;
    let at = Location::new(39.9, 116.4, 5.0).unwrap();
    svc.update_location(&alice, at, Gender::Female)
        .await
        .unwrap();
    alice
}

#[tokio::test]
async fn an_update_racing_a_withdrawal_leaves_no_location_behind() {
    let (svc, store, _) = service(true, 0);
    let alice = alice_consenting(&svc, &[Feature::PeopleNearby]).await;
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

/// A write whose reply was lost (a timeout) may still have landed: one admitted before a
/// withdrawal's purge is refused by the store, whatever its caller learns.
#[tokio::test]
async fn an_update_whose_reply_was_lost_is_still_checked_against_a_withdrawal() {
    let (svc, store, _) = service_with(true, 0, true);
    let alice = alice_consenting(&svc, &[Feature::PeopleNearby]).await;
    let at = Location::new(39.9, 116.4, 5.0).unwrap();

    let updated = svc.update_location(&alice, at, Gender::Female).await;

    assert!(updated.is_err(), "{updated:?}");
    assert_eq!(
        store.physical_entries(),
        0,
        "a location outlived its consent"
    );
}

/// Found in the cluster checker (seed 1796454985613758213) and by reading: an update whose
/// consent check passed, whose write landed after a withdrawal's purge, and whose node died
/// before it could check consent again, left the location stored after WithdrawConsent had
/// answered OK (exported, kept until its deadline; only the consent filter kept it out of
/// lists). The write is fenced by the purge's clear mark, so it stores nothing.
#[tokio::test]
async fn an_update_landing_after_a_withdrawal_from_a_node_that_dies_leaves_nothing() {
    let (svc, store, _) = service_dying(true, 0, false, true);
    let alice = alice_consenting(&svc, &[Feature::PeopleNearby]).await;
    let at = Location::new(39.9, 116.4, 5.0).unwrap();

    let updated = svc.update_location(&alice, at, Gender::Female).await;

    assert!(updated.is_err(), "the node died: {updated:?}");
    assert_eq!(
        store.physical_entries(),
        0,
        "a location outlived its consent"
    );
    let export = svc.export(&alice).await.unwrap();
    assert!(export.locations.is_empty(), "{:?}", export.locations);
}

#[tokio::test]
async fn a_withdrawal_whose_purge_failed_is_finished_by_a_later_sweep() {
    let (svc, store, clock) = service(false, 1);
    let alice = alice_sharing(&svc).await;

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

/// A call that needs randomness fails when the source does, and nothing
/// guessable (a clock reading, zeros) stands in: no shake is left pending, no consent event
/// is written, the location stays where it was.
#[tokio::test]
async fn a_broken_randomness_source_fails_the_call_and_changes_nothing() {
    let (svc, store, _) = service(false, 0);
    let alice = alice_consenting(&svc, &[Feature::PeopleNearby, Feature::Shake]).await;
    let at = Location::new(39.9, 116.4, 5.0).unwrap();
    svc.update_location(&alice, at, Gender::Female)
        .await
        .unwrap();
    let history = ConsentStore::history(store.as_ref(), &alice)
        .await
        .unwrap()
        .len();
    let broken = crate::random::break_on_this_thread();

    let shaken = svc.shake("test", &alice, at, Duration::from_secs(1)).await;
    let withdrawn = svc.withdraw_consent(&alice, Feature::PeopleNearby).await;

    drop(broken);
    for outcome in [shaken.map(|_| ()), withdrawn.map(|_| ())] {
        assert!(
            matches!(&outcome, Err(ServiceError::Store(e)) if e.kind == StoreErrorKind::Internal),
            "{outcome:?}"
        );
    }
    assert_eq!(
        ConsentStore::history(store.as_ref(), &alice)
            .await
            .unwrap()
            .len(),
        history
    );
    assert_eq!(store.physical_entries(), 1, "the location is where it was");
    let bob = UserId::parse("bob", "user_id").unwrap();
    let notice = NoticeVersion::parse("2026-01").unwrap();
    svc.grant_consent(&bob, Feature::Shake, &notice, &Source::default())
        .await
        .unwrap();
    let partner = svc
        .shake("test", &bob, at, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        partner.is_none(),
        "alice left no pending shake: {partner:?}"
    );
}

/// The embedded store's Shake side, where the user withdraws Shake consent (and the
/// withdrawal clears Shake) after the service checked consent and before the pairing step:
/// the race of a node under load between the two.
struct WithdrawBeforePairing {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
}

#[async_trait]
impl ShakeStore for WithdrawBeforePairing {
    async fn shake(&self, shake: &NewShake<'_>) -> StoreResult<ShakeOutcome> {
        let user = shake.user;
        let current = self.store.current(user, Feature::Shake).await?;
        let withdrawn = current.withdraw(self.clock.now(), "w".into());
        self.store.append(withdrawn.expect("an event")).await?;
        self.store.clear_shake(user).await?;
        self.store.shake(shake).await
    }

    async fn clear_mark(&self, user: &UserId) -> StoreResult<i64> {
        self.store.clear_mark(user).await
    }

    async fn await_partner(
        &self,
        pending: &PendingShake,
        wait: Duration,
    ) -> StoreResult<Option<ShakePair>> {
        self.store.await_partner(pending, wait).await
    }

    async fn withdraw(&self, pending: &PendingShake) -> StoreResult<Option<ShakePair>> {
        self.store.withdraw(pending).await
    }

    async fn record_match(
        &self,
        user: &UserId,
        matched: &ShakeMatch,
        retention: Retention,
    ) -> StoreResult<()> {
        self.store.record_match(user, matched, retention).await
    }

    async fn history(&self, user: &UserId) -> StoreResult<Vec<ShakeMatch>> {
        ShakeStore::history(self.store.as_ref(), user).await
    }

    async fn leave_shake(&self, user: &UserId) -> StoreResult<Option<Timestamp>> {
        self.store.leave_shake(user).await
    }

    async fn clear_shake(&self, user: &UserId) -> StoreResult<u32> {
        self.store.clear_shake(user).await
    }
}

/// A withdrawal of Shake consent that lands between a Shake's consent
/// check and its pairing step: the shake is not paired with the one waiting (whose user
/// would otherwise be matched with someone who withdrew), nor left pending, nor recorded.
#[tokio::test]
async fn a_shake_racing_a_withdrawal_pairs_nobody() {
    let (_, store, clock) = service(false, 0);
    let svc = Vicinity::new(Deps {
        shakes: Arc::new(WithdrawBeforePairing {
            store: store.clone(),
            clock: clock.clone(),
        }),
        ..deps_on(&store, &clock)
    });
    let alice = alice_consenting(&svc, &[Feature::Shake]).await;
    let at = Location::new(39.9, 116.4, 5.0).unwrap();
    let bob = UserId::parse("bob", "user_id").unwrap();
    let cell = SnapGrid::default().snap(at.coords);
    let window = Duration::from_secs(3);
    let shake = NewShake {
        id: 7,
        user: &bob,
        cell,
        window,
        mark: 0,
    };
    let waiting = store.shake(&shake).await;
    let Ok(ShakeOutcome::Pending(waiting)) = waiting else {
        panic!("bob waits: {waiting:?}")
    };

    let shaken = svc.shake("test", &alice, at, Duration::from_secs(1)).await;

    assert!(matches!(shaken, Ok(None)), "{shaken:?}");
    let pair = store.withdraw(&waiting).await.unwrap();
    assert_eq!(pair, None, "bob was matched with a user who withdrew");
    assert!(
        ShakeStore::history(store.as_ref(), &alice)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ShakeStore::history(store.as_ref(), &bob)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.physical_entries(), 0, "alice left a pending shake");
}

/// A log sink for one test: what the `fmt` layer writes, kept in memory.
#[derive(Clone, Default)]
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A withdrawal whose purge fails (the location store down) has still
/// withdrawn consent, which every read sees: it is audited then, not only once a sweep
/// finishes the purge.
#[tokio::test]
async fn a_withdrawal_whose_purge_failed_is_still_audited() {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let (svc, _, _) = service(false, 1);
    let alice = alice_sharing(&svc).await;

    let withdrawn = svc.withdraw_consent(&alice, Feature::PeopleNearby).await;

    assert!(withdrawn.is_err(), "the purge failed: {withdrawn:?}");
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("consent_withdrawn"), "not audited: {log}");
}
