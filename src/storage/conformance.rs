//! The conformance suite every store backend must pass (the memory store, a single Redis and
//! a Redis Cluster run the same checks, one test per check per backend, through
//! [`conformance_tests!`]). Each check panics on the first broken promise, like a test.
//!
//! The suite uses users whose ids start with `conf-` and the default snapping grid; it needs a
//! store with nothing else in it, or at least nothing near (10.0, 10.0).

use std::{collections::HashSet, future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::domain::shake::{ShakeMatch, ShakePair};

use super::{
    Admission, ConsentStore, Holding, Judged, Limit, LimitKey, LimitStore, Limited, LocationEntry,
    LocationStore, NearbyResult, NewShake, Position, ShakeOutcome, ShakeStore, StoreErrorKind,
    StoreResult, UpdateLimits,
};
use crate::domain::{
    ConsentRecord, ConsentState, Deadlines, Feature, Gender, Location, Retention, SnapGrid,
    Timestamp, UserId,
    limits::Rate,
    nearby::{NearbyRequest, Secret},
    user::GenderFilter,
};

/// A future the fixture returns.
pub type ProbeFuture = Pin<Box<dyn Future<Output = StoreResult<usize>> + Send>>;
/// A future that lets time pass.
pub type StepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A backend under test and how to observe it.
pub struct Fixture {
    /// The location store.
    pub locations: Arc<dyn LocationStore>,
    /// The consent store.
    pub consents: Arc<dyn ConsentStore>,
    /// The Shake store.
    pub shakes: Arc<dyn ShakeStore>,
    /// The limit store.
    pub limits: Arc<dyn LimitStore>,
    /// Moves the store's clock forward by at least the given duration (a manual clock, or a
    /// real sleep for a store whose clock cannot be moved).
    pub advance: Box<dyn Fn(Duration) -> StepFuture + Send + Sync>,
    /// Counts the location entries physically held, bypassing anything that hides expired
    /// data (for Redis: `DBSIZE` and member counts, never `SCAN` or `EXISTS`).
    pub physical_entries: Box<dyn Fn() -> ProbeFuture + Send + Sync>,
    /// How long after a deadline data may still physically exist.
    pub sweep_bound: Duration,
}

/// One `#[tokio::test]` per check, each on a fresh fixture from `$fixture` (an `async fn`
/// returning the [`Fixture`] and whatever must stay alive while it runs, such as the private
/// Redis): a failure names its check, and the module the macro is used in names the backend.
/// The list below is the suite: a check not listed here does not run.
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::storage::conformance::conformance_tests!(@each $fixture;
            upsert_then_get_returns_the_stored_cell,
            clearing_is_physical_and_idempotent,
            a_clear_fences_every_write_admitted_before_it,
            nearby_lists_others_in_range_by_band,
            a_search_across_partitions_lists_both_sides,
            nearby_requires_the_viewers_own_entry,
            moving_leaves_the_old_cell,
            leaving_keeps_the_entry_visible_until_its_deadline,
            a_leave_racing_a_clear_never_brings_the_entry_back,
            a_leave_cut_off_mid_call_is_still_cleared_whole,
            expired_entries_are_never_returned_and_are_purged,
            consent_records_follow_their_contract,
            consent_history_is_bounded_and_keeps_every_current_record,
            two_shakes_pair_with_each_other,
            a_lone_shake_is_withdrawn_and_leaves_nothing,
            a_pending_shake_is_in_the_purge_schedule,
            the_nearest_pending_shake_wins_and_nobody_pairs_twice,
            shake_history_expires_and_clears,
            clearing_shake_withdraws_every_pending_shake_of_the_user,
            a_shake_whose_user_cleared_since_its_mark_is_refused,
            clearing_shake_drops_an_uncollected_pairing_with_the_user,
            clearing_shake_removes_the_user_from_partners_histories,
            a_rate_admits_its_burst_then_refuses_with_the_real_wait,
            forgetting_a_user_resets_every_limit_but_the_fresh_starts,
            places_are_capped_given_back_and_freed_at_their_end,
            counting_and_holding_is_all_or_nothing,
        );
    };
    (@each $fixture:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (fx, _running) = $fixture().await;
                $crate::storage::conformance::$check(&fx).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;

fn user(name: &str) -> UserId {
    UserId::parse(&format!("conf-{name}"), "user_id").expect("valid test id")
}

fn position(name: &str, lat: f64, lng: f64, gender: Gender) -> Position {
    let location = Location::new(lat, lng, 5.0).expect("valid");
    Position {
        user_id: user(name),
        feature: Feature::PeopleNearby,
        cell: SnapGrid::default().snap(location.coords),
        gender,
    }
}

fn request(viewer: &str) -> NearbyRequest {
    NearbyRequest {
        viewer: user(viewer),
        max_distance_m: 5_000,
        limit: 100,
        gender_filter: GenderFilter::Any,
        exclude: HashSet::new(),
        secret: Arc::new(Secret::from_bytes([9; 32])),
        page: None,
        shown: None,
    }
}

fn long() -> Retention {
    Retention::default()
}

/// What a search by `viewer` finds; `None` when the viewer has no entry of their own.
async fn search(fx: &Fixture, viewer: &str) -> Option<NearbyResult> {
    let result = fx.locations.nearby(&request(viewer)).await;
    result.expect("nearby")
}

async fn listed(fx: &Fixture, viewer: &str) -> Vec<(String, u32)> {
    let result = search(fx, viewer).await;
    let page = result.expect("viewer has an entry").page;
    page.hits
        .into_iter()
        .map(|h| {
            (
                h.user_id.as_str().trim_start_matches("conf-").to_owned(),
                h.band_m,
            )
        })
        .collect()
}

async fn physical(fx: &Fixture) -> usize {
    (fx.physical_entries)().await.expect("probe")
}

/// Writes `pos` now with the long retention: its deadlines.
async fn upsert(fx: &Fixture, pos: Position) -> Deadlines {
    fx.locations.upsert_now(pos, long()).await.expect("upsert")
}

/// The entry of `name` in `feature`, if the store returns one.
async fn stored(fx: &Fixture, feature: Feature, name: &str) -> Option<LocationEntry> {
    let got = fx.locations.get(feature, &user(name)).await;
    got.expect("get")
}

/// Clears `name` from every feature: the entries cleared.
async fn clear(fx: &Fixture, name: &str) -> u32 {
    let cleared = fx.locations.clear(&user(name), &Feature::ALL).await;
    cleared.expect("clear")
}

async fn clear_all(fx: &Fixture, names: &[&str]) {
    for name in names {
        clear(fx, name).await;
    }
}

/// The Shake history the store shows of `name`.
async fn shake_history(fx: &Fixture, name: &str) -> Vec<ShakeMatch> {
    fx.shakes.history(&user(name)).await.expect("history")
}

pub async fn upsert_then_get_returns_the_stored_cell(fx: &Fixture) {
    let before = fx.locations.now().await.expect("now");
    let pos = position("a", 10.000_123_4, 10.000_987_6, Gender::Female);
    let deadlines = upsert(fx, pos.clone()).await;
    // A store may round deadlines down to the second (Redis keeps whole seconds).
    let after = fx.locations.now().await.expect("now");
    assert!(
        deadlines.last_active.plus(Duration::from_secs(1)) > before
            && deadlines.last_active <= after,
        "deadlines come from the store's clock"
    );
    assert_eq!(
        deadlines.purge_at,
        deadlines.last_active.plus(long().window())
    );
    let entry = stored(fx, Feature::PeopleNearby, "a")
        .await
        .expect("entry is there");
    assert_eq!(entry.position, pos);
    assert_eq!(entry.deadlines, deadlines);
    assert!(!entry.left);
    let missing = stored(fx, Feature::Shake, "a").await;
    assert!(missing.is_none(), "entries are per feature");
    clear_all(fx, &["a"]).await;
}

pub async fn clearing_is_physical_and_idempotent(fx: &Fixture) {
    let baseline = physical(fx).await;
    upsert(fx, position("c", 10.0, 10.0, Gender::Male)).await;
    assert!(physical(fx).await > baseline);
    assert_eq!(clear(fx, "c").await, 1);
    assert_eq!(physical(fx).await, baseline, "nothing of the entry remains");
    let again = clear(fx, "c").await;
    assert_eq!(again, 0, "clearing what is not there is Ok(0)");
    let gone = stored(fx, Feature::PeopleNearby, "c").await;
    assert!(gone.is_none());
}

pub async fn nearby_lists_others_in_range_by_band(fx: &Fixture) {
    let people = [
        ("v", 10.0, 10.0),
        ("near", 10.001, 10.001),
        ("mid", 10.02, 10.0),
        ("far", 10.2, 10.0),
    ];
    for (name, lat, lng) in people {
        upsert(fx, position(name, lat, lng, Gender::Female)).await;
    }
    let seen = listed(fx, "v").await;
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["near", "mid"],
        "sorted by band, self and the far one left out"
    );
    assert!(
        seen[0].1 <= 500 && seen[1].1 == 3_000,
        "bands, not distances: {seen:?}"
    );
    clear_all(fx, &["v", "near", "mid", "far"]).await;
}

/// The viewer in a cell on the border of two Redis partitions (hash tags), one user in each
/// neighbouring cell: everyone is listed whichever partition holds them.
pub async fn a_search_across_partitions_lists_both_sides(fx: &Fixture) {
    use crate::storage::redis::keys::partition;
    let grid = SnapGrid::default();
    let start = grid.snap(crate::domain::Coordinates::new(10.0, 10.0).expect("valid"));
    let border = start
        .grid_disk::<Vec<_>>(60)
        .into_iter()
        .find(|cell| {
            let mut parts: Vec<_> = cell
                .grid_disk::<Vec<_>>(1)
                .into_iter()
                .map(partition)
                .collect();
            parts.sort();
            parts.dedup();
            parts.len() > 1
        })
        .expect("a partition border within 60 rings");
    let at = |cell: h3o::CellIndex| {
        let centre = h3o::LatLng::from(cell);
        (centre.lat(), centre.lng())
    };
    let (lat, lng) = at(border);
    upsert(fx, position("border-v", lat, lng, Gender::Male)).await;
    let mut names = Vec::new();
    for (i, cell) in border.grid_ring::<Vec<_>>(1).into_iter().enumerate() {
        let name = format!("border-{i}");
        let (lat, lng) = at(cell);
        upsert(fx, position(&name, lat, lng, Gender::Female)).await;
        names.push(name);
    }
    let mut seen: Vec<String> = listed(fx, "border-v")
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    seen.sort();
    names.sort();
    assert_eq!(seen, names, "a neighbour in the other partition was missed");
    names.push("border-v".to_owned());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    clear_all(fx, &names).await;
}

pub async fn nearby_requires_the_viewers_own_entry(fx: &Fixture) {
    let none = search(fx, "nobody").await;
    assert!(none.is_none(), "no own entry, no list");
}

pub async fn moving_leaves_the_old_cell(fx: &Fixture) {
    for (name, lat) in [("v2", 10.0), ("mover", 10.001)] {
        upsert(fx, position(name, lat, 10.0, Gender::Male)).await;
    }
    let baseline = physical(fx).await;
    upsert(fx, position("mover", 11.0, 10.0, Gender::Male)).await;
    assert!(
        listed(fx, "v2").await.is_empty(),
        "the old position is gone"
    );
    assert_eq!(physical(fx).await, baseline, "a move replaces, never adds");
    clear_all(fx, &["v2", "mover"]).await;
}

pub async fn leaving_keeps_the_entry_visible_until_its_deadline(fx: &Fixture) {
    for (name, lat) in [("v3", 10.0), ("leaver", 10.001)] {
        upsert(fx, position(name, lat, 10.0, Gender::Male)).await;
    }
    let left = fx
        .locations
        .leave(Feature::PeopleNearby, &user("leaver"), long())
        .await
        .expect("leave")
        .expect("was in the feature");
    let entry = stored(fx, Feature::PeopleNearby, "leaver")
        .await
        .expect("still held until purge_at");
    assert!(entry.left);
    assert_eq!(entry.deadlines, left);
    assert_eq!(listed(fx, "v3").await.len(), 1, "a leaver stays visible");
    let own = search(fx, "leaver").await;
    assert!(own.is_none(), "a leaver cannot look");
    let absent = fx
        .locations
        .leave(Feature::Shake, &user("leaver"), long())
        .await
        .expect("leave");
    assert!(absent.is_none());
    clear_all(fx, &["v3", "leaver"]).await;
}

pub async fn expired_entries_are_never_returned_and_are_purged(fx: &Fixture) {
    let short = Retention::new(Duration::from_secs(1)).expect("valid");
    upsert(fx, position("v4", 10.0, 10.0, Gender::Male)).await;
    let baseline = physical(fx).await;
    let deadlines = fx
        .locations
        .upsert_now(position("brief", 10.001, 10.0, Gender::Male), short)
        .await
        .expect("upsert");
    (fx.advance)(Duration::from_millis(1_100)).await;
    let now = fx.locations.now().await.expect("now");
    assert!(now >= deadlines.purge_at);
    let got = stored(fx, Feature::PeopleNearby, "brief").await;
    assert!(got.is_none(), "expired entries are never returned");
    assert!(listed(fx, "v4").await.is_empty(), "nor listed");
    let limit = deadlines.purge_at.plus(fx.sweep_bound);
    loop {
        if physical(fx).await == baseline {
            break;
        }
        let now = fx.locations.now().await.expect("now");
        assert!(
            now < limit,
            "still physically present {:?} after purge_at",
            fx.sweep_bound
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fx.locations.purge_expired().await.expect("purge");
    let again = fx.locations.purge_expired().await.expect("purge");
    assert_eq!(again.entries, 0, "nothing left past its deadline");
    clear_all(fx, &["v4"]).await;
}

pub async fn consent_records_follow_their_contract(fx: &Fixture) {
    let who = user("consent");
    let first = fx
        .consents
        .current(&who, Feature::Shake)
        .await
        .expect("current");
    assert_eq!(first, ConsentRecord::undecided(who.clone(), Feature::Shake));
    let at = Timestamp::from_millis(1_000);
    let notice = crate::domain::NoticeVersion::parse("n1").expect("valid");
    let source = crate::domain::Source::default();
    let mut grant = first
        .grant(&notice, &source, at, "c1".into())
        .expect("a change");
    // A signed receipt is kept with its event (contract §4.8): its text as a JWS has `.`, `-`
    // and `_` besides letters and digits.
    grant.receipt = "eyJhbGciOiJFZERTQSJ9.eyJyZWNvcmRfaWQiOiJjMSJ9.c2ln-_x".into();
    fx.consents.append(grant.clone()).await.expect("append");
    let granted = fx
        .consents
        .current(&who, Feature::Shake)
        .await
        .expect("current");
    assert_eq!(granted, grant);
    let other = user("consent-other");
    let among = fx
        .consents
        .granted_among(Feature::Shake, &[other, who.clone()])
        .await;
    assert_eq!(among.expect("granted_among"), [false, true]);
    let none = fx.consents.granted_among(Feature::Shake, &[]).await;
    assert!(none.expect("granted_among of nobody").is_empty());
    let withdraw = grant.withdraw(at.plus(Duration::from_secs(1)), "c2".into());
    assert_eq!(
        withdraw.as_ref().map(|w| w.receipt.as_str()),
        Some(""),
        "a withdrawal does not carry its grant's receipt"
    );
    fx.consents
        .append(withdraw.clone().expect("a change"))
        .await
        .expect("append");
    let current = fx.consents.all_current(&who).await.expect("all");
    assert_eq!(current.len(), 2);
    assert_eq!(
        current[0].state,
        ConsentState::Undecided,
        "People Nearby untouched"
    );
    assert_eq!(current[1].state, ConsentState::Withdrawn);
    let history = fx.consents.history(&who).await.expect("history");
    assert_eq!(history, vec![grant, withdraw.expect("a change")]);
    assert_eq!(fx.consents.forget(&who).await.expect("forget"), 2);
    assert!(fx.consents.history(&who).await.expect("history").is_empty());
    assert_eq!(fx.consents.forget(&who).await.expect("forget"), 0);
    fx.consents.ping().await.expect("ping");
}

const WINDOW: Duration = Duration::from_secs(3);

fn cell_at(lat: f64) -> h3o::CellIndex {
    SnapGrid::default().snap(crate::domain::Coordinates::new(lat, 20.0).expect("valid"))
}

async fn shake(fx: &Fixture, id: u64, name: &str, lat: f64) -> ShakeOutcome {
    let user = user(name);
    let mark = fx.shakes.clear_mark(&user).await.expect("mark");
    let shake = NewShake {
        id,
        user: &user,
        cell: cell_at(lat),
        window: WINDOW,
        mark,
    };
    fx.shakes.shake(&shake).await.expect("shake")
}

fn paired(outcome: &ShakeOutcome) -> Option<&ShakePair> {
    match outcome {
        ShakeOutcome::Paired(pair) => Some(pair),
        ShakeOutcome::Pending(_) | ShakeOutcome::Cleared => None,
    }
}

pub async fn two_shakes_pair_with_each_other(fx: &Fixture) {
    let first = shake(fx, 101, "sa", 20.0).await;
    let ShakeOutcome::Pending(pending) = first else {
        panic!("nobody was waiting: {first:?}")
    };
    let second = shake(fx, 102, "sb", 20.001).await;
    let pair = paired(&second).expect("paired with the pending shake");
    assert_eq!(pair.partner, user("sa"));
    let theirs = fx
        .shakes
        .await_partner(&pending, WINDOW)
        .await
        .expect("await");
    let theirs = theirs.expect("the pending side learns of the pair");
    assert_eq!(theirs.partner, user("sb"));
    assert_eq!(theirs.partner_cell, cell_at(20.001));
    assert_eq!(theirs.matched_at, pair.matched_at);
}

pub async fn a_lone_shake_is_withdrawn_and_leaves_nothing(fx: &Fixture) {
    let baseline = physical(fx).await;
    let ShakeOutcome::Pending(pending) = shake(fx, 201, "lone", 21.0).await else {
        panic!("nobody was waiting")
    };
    let held = physical(fx).await;
    assert!(
        held > baseline,
        "a pending shake is held: {held} vs {baseline}"
    );
    let waited = fx
        .shakes
        .await_partner(&pending, Duration::from_millis(200))
        .await;
    assert!(waited.expect("await").is_none());
    assert_eq!(
        physical(fx).await,
        baseline,
        "withdrawn at the end of its wait"
    );
    let again = shake(fx, 202, "lone", 21.0).await;
    assert!(
        paired(&again).is_none(),
        "a withdrawn shake is never paired"
    );
    fx.shakes
        .withdraw(&pending_of(again))
        .await
        .expect("withdraw");
    assert_eq!(physical(fx).await, baseline);
}

/// A pending shake holds a position until it expires, and an uncollected pairing until its
/// mailbox goes: the purge schedule the overdue gauge reads names each one's deadline, and
/// forgets a shake once it is withdrawn.
pub async fn a_pending_shake_is_in_the_purge_schedule(fx: &Fixture) {
    let earliest = async || fx.locations.earliest_deadline().await.expect("read");
    assert_eq!(earliest().await, None);
    let ShakeOutcome::Pending(pending) = shake(fx, 211, "due", 21.5).await else {
        panic!("nobody was waiting")
    };
    assert_eq!(earliest().await, Some(pending.expires));
    fx.shakes.withdraw(&pending).await.expect("withdraw");
    assert_eq!(earliest().await, None);

    let ShakeOutcome::Pending(waiting) = shake(fx, 212, "due-a", 21.6).await else {
        panic!("nobody was waiting")
    };
    let arriving = shake(fx, 213, "due-b", 21.6).await;
    assert!(paired(&arriving).is_some(), "{arriving:?}");
    let mailbox_until = waiting.expires.plus(crate::storage::SHAKE_UNCOLLECTED);
    assert_eq!(
        earliest().await,
        Some(mailbox_until),
        "the uncollected pairing"
    );
}

/// The pending shake of an outcome (panics if it was paired).
fn pending_of(outcome: ShakeOutcome) -> crate::domain::shake::PendingShake {
    match outcome {
        ShakeOutcome::Pending(p) => p,
        ShakeOutcome::Paired(pair) => panic!("unexpectedly paired with {:?}", pair.partner),
        ShakeOutcome::Cleared => panic!("refused as cleared"),
    }
}

pub async fn the_nearest_pending_shake_wins_and_nobody_pairs_twice(fx: &Fixture) {
    // Two pending shakes of one user (a user is never paired with themselves), one far and
    // one near the shakers that follow.
    let _far = pending_of(shake(fx, 301, "x", 22.5).await);
    let _near = pending_of(shake(fx, 302, "x", 22.001).await);
    let third = shake(fx, 303, "third", 22.0).await;
    let pair = paired(&third).expect("paired");
    assert_eq!(pair.partner, user("x"));
    assert_eq!(pair.partner_cell, cell_at(22.001), "the nearest wins");
    let fourth = shake(fx, 304, "fourth", 22.0).await;
    let pair = paired(&fourth).expect("paired");
    assert_eq!(
        pair.partner_cell,
        cell_at(22.5),
        "a paired shake is never paired again"
    );
    let fifth = shake(fx, 305, "fifth", 22.0).await;
    let left = pending_of(fifth);
    fx.shakes.withdraw(&left).await.expect("withdraw");
}

pub async fn shake_history_expires_and_clears(fx: &Fixture) {
    let brief = Retention::new(Duration::from_secs(1)).expect("valid");
    let now = fx.locations.now().await.expect("now");
    let matched = ShakeMatch {
        partner: user("h-b"),
        band_m: 500,
        matched_at: now,
    };
    let baseline = physical(fx).await;
    fx.shakes
        .record_match(&user("h-a"), &matched, brief)
        .await
        .expect("record");
    fx.shakes
        .record_match(&user("h-c"), &matched, long())
        .await
        .expect("record");
    assert_eq!(shake_history(fx, "h-a").await, vec![matched.clone()]);
    let purge_at = fx.shakes.leave_shake(&user("h-c")).await.expect("leave");
    assert_eq!(purge_at, Some(now.plus(long().window())));
    assert_eq!(fx.shakes.clear_shake(&user("h-c")).await.expect("clear"), 1);
    assert!(shake_history(fx, "h-c").await.is_empty());
    (fx.advance)(Duration::from_millis(1_100)).await;
    assert!(shake_history(fx, "h-a").await.is_empty(), "expired");
    let limit = now.plus(brief.window()).plus(fx.sweep_bound);
    while physical(fx).await > baseline {
        assert!(
            fx.locations.now().await.expect("now") < limit,
            "history still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Leave that read the entry before a concurrent Clear removed it must not
/// write it back (Leave creates nothing).
pub async fn a_leave_racing_a_clear_never_brings_the_entry_back(fx: &Fixture) {
    upsert(fx, position("race-viewer", 10.0, 10.0, Gender::Male)).await;
    let before = physical(fx).await;
    for round in 0..30u32 {
        let name = format!("race-{round}");
        upsert(fx, position(&name, 10.000_5, 10.000_5, Gender::Female)).await;
        let who = user(&name);
        let leave = fx.locations.leave(Feature::PeopleNearby, &who, long());
        let clear = async {
            // Vary which side gets ahead by a few scheduling points.
            for _ in 0..round % 4 {
                tokio::task::yield_now().await;
            }
            fx.locations.clear(&who, &Feature::ALL).await
        };
        let (_, cleared) = tokio::join!(leave, clear);
        assert_eq!(cleared.expect("clear"), 1, "round {round}");
        let entry = stored(fx, Feature::PeopleNearby, &name).await;
        assert_eq!(entry, None, "round {round}: the entry came back");
        assert!(
            !listed(fx, "race-viewer")
                .await
                .iter()
                .any(|(u, _)| *u == name),
            "round {round}: listed after the clear"
        );
        assert_eq!(physical(fx).await, before, "round {round}: data held");
    }
    clear_all(fx, &["race-viewer"]).await;
}

/// A Leave cut off between its steps (by a deadline) leaves nothing that a
/// later Clear misses.
pub async fn a_leave_cut_off_mid_call_is_still_cleared_whole(fx: &Fixture) {
    let before = physical(fx).await;
    for round in 0..30u64 {
        let name = format!("cut-{round}");
        upsert(fx, position(&name, 10.001, 10.001, Gender::Male)).await;
        let cut = Duration::from_micros(100 + round * 150);
        let who = user(&name);
        let leave = fx.locations.leave(Feature::PeopleNearby, &who, long());
        let _ = tokio::time::timeout(cut, leave).await;
        clear(fx, &name).await;
        assert_eq!(physical(fx).await, before, "round {round}: data held");
    }
}

/// A user with two pending shakes is matched by nobody once their Shake data
/// is cleared (withdrawal and erasure clear it too).
pub async fn clearing_shake_withdraws_every_pending_shake_of_the_user(fx: &Fixture) {
    let baseline = physical(fx).await;
    let ShakeOutcome::Pending(first) = shake(fx, 3101, "twice", 30.0).await else {
        panic!("nobody was waiting")
    };
    let ShakeOutcome::Pending(second) = shake(fx, 3102, "twice", 30.0).await else {
        panic!("a user is not paired with themselves")
    };
    assert_eq!(
        fx.shakes.clear_shake(&user("twice")).await.expect("clear"),
        2
    );
    let ShakeOutcome::Pending(late) = shake(fx, 3103, "late", 30.0).await else {
        panic!("paired with a shake of a user who cleared Shake")
    };
    for pending in [&first, &second] {
        let pair = fx.shakes.withdraw(pending).await.expect("withdraw");
        assert_eq!(pair, None, "the cleared user's shake was paired");
    }
    fx.shakes.withdraw(&late).await.expect("withdraw");
    assert_eq!(physical(fx).await, baseline);
}

/// A withdrawal that lands between a Shake's consent check and its pairing
/// clears Shake after the call read its mark, so the pairing step refuses it: the user is
/// neither paired (with a shake already waiting) nor left pending. Every Clear changes the
/// mark, two in a row too.
pub async fn a_shake_whose_user_cleared_since_its_mark_is_refused(fx: &Fixture) {
    let baseline = physical(fx).await;
    let ShakeOutcome::Pending(waiting) = shake(fx, 5101, "waiting", 32.0).await else {
        panic!("nobody was waiting")
    };
    let withdrawn = user("withdrawn");
    let mut marks = vec![fx.shakes.clear_mark(&withdrawn).await.expect("mark")];
    for _ in 0..2 {
        fx.shakes.clear_shake(&withdrawn).await.expect("clear");
        marks.push(fx.shakes.clear_mark(&withdrawn).await.expect("mark"));
    }
    assert!(marks[0] < marks[1] && marks[1] < marks[2], "{marks:?}");
    for stale in &marks[..2] {
        let cell = cell_at(32.0);
        let shake = NewShake {
            id: 5102,
            user: &withdrawn,
            cell,
            window: WINDOW,
            mark: *stale,
        };
        let outcome = fx.shakes.shake(&shake).await.expect("shake");
        assert_eq!(outcome, ShakeOutcome::Cleared);
    }
    let pair = fx.shakes.withdraw(&waiting).await.expect("withdraw");
    assert_eq!(pair, None, "paired with a user whose Shake was cleared");
    assert_eq!(physical(fx).await, baseline);
    // With the mark read after the Clear, the user shakes again.
    let ShakeOutcome::Pending(again) = shake(fx, 5103, "withdrawn", 32.0).await else {
        panic!("nobody was waiting")
    };
    fx.shakes.withdraw(&again).await.expect("withdraw");
}

/// A pairing made just before a Clear of the arriving user is not delivered
/// to the waiting side afterwards.
pub async fn clearing_shake_drops_an_uncollected_pairing_with_the_user(fx: &Fixture) {
    let baseline = physical(fx).await;
    let ShakeOutcome::Pending(waiting) = shake(fx, 4101, "waits", 31.0).await else {
        panic!("nobody was waiting")
    };
    let arrived = shake(fx, 4102, "arrives", 31.0).await;
    assert!(paired(&arrived).is_some(), "{arrived:?}");
    fx.shakes
        .clear_shake(&user("arrives"))
        .await
        .expect("clear");
    let pair = fx.shakes.withdraw(&waiting).await.expect("withdraw");
    assert_eq!(pair, None, "a pairing with a cleared user was delivered");
    assert_eq!(physical(fx).await, baseline);
}

/// Data about a pair goes when either party clears Shake: the other's
/// history no longer shows them, and a match recorded late against them is dropped.
pub async fn clearing_shake_removes_the_user_from_partners_histories(fx: &Fixture) {
    let baseline = physical(fx).await;
    let now = fx.locations.now().await.expect("now");
    let with = |partner: &str| ShakeMatch {
        partner: user(partner),
        band_m: 500,
        matched_at: now,
    };
    let record = |name: &'static str, m: ShakeMatch| async move {
        fx.shakes
            .record_match(&user(name), &m, long())
            .await
            .expect("record");
    };
    record("pa", with("pb")).await;
    record("pb", with("pa")).await;
    record("pc", with("pa")).await;
    record("pc", with("pd")).await;
    fx.shakes.clear_shake(&user("pa")).await.expect("clear");
    assert!(shake_history(fx, "pb").await.is_empty());
    let left = shake_history(fx, "pc").await;
    assert_eq!(
        left,
        vec![with("pd")],
        "only the match with the cleared user goes"
    );
    record("pb", with("pa")).await;
    assert!(
        shake_history(fx, "pb").await.is_empty(),
        "a match recorded after the Clear came back"
    );
    for name in ["pb", "pc", "pd"] {
        fx.shakes.clear_shake(&user(name)).await.expect("clear");
    }
    assert_eq!(physical(fx).await, baseline);
}

/// History grew without bound (3,000 grants made GetConsent take 136 ms);
/// now it keeps `HISTORY_PER_FEATURE` events per feature, the current ones always.
pub async fn consent_history_is_bounded_and_keeps_every_current_record(fx: &Fixture) {
    use crate::domain::consent::HISTORY_PER_FEATURE;
    let who = user("history");
    let source = crate::domain::Source::default();
    let notice = crate::domain::NoticeVersion::parse("n").expect("valid");
    let shake = ConsentRecord::undecided(who.clone(), Feature::Shake)
        .grant(&notice, &source, Timestamp::from_millis(1), "s1".into())
        .expect("a change");
    fx.consents.append(shake.clone()).await.expect("append");
    let mut current = ConsentRecord::undecided(who.clone(), Feature::PeopleNearby);
    for i in 0..HISTORY_PER_FEATURE as i64 * 2 + 7 {
        let at = Timestamp::from_millis(10 + i);
        let event = if current.is_granted() {
            current.withdraw(at, format!("w{i}"))
        } else {
            current.grant(&notice, &source, at, format!("g{i}"))
        };
        current = event.expect("a change");
        fx.consents.append(current.clone()).await.expect("append");
    }
    let history = fx.consents.history(&who).await.expect("history");
    let nearby = history
        .iter()
        .filter(|e| e.feature == Feature::PeopleNearby);
    assert_eq!(nearby.count(), HISTORY_PER_FEATURE);
    assert_eq!(history.last(), Some(&current), "the latest event stays");
    assert!(
        history.contains(&shake),
        "another feature's only event stays"
    );
    let all = fx.consents.all_current(&who).await.expect("current");
    assert_eq!(all, vec![current.clone(), shake]);
    let granted = fx
        .consents
        .granted_among(Feature::Shake, std::slice::from_ref(&who))
        .await;
    assert_eq!(granted.expect("granted"), [true]);
    fx.consents.forget(&who).await.expect("forget");
}

/// The wait of a refusal (panics on an admission).
fn refused_for(admission: Admission) -> Duration {
    match admission {
        Admission::Refused(wait) => wait,
        Admission::Admitted(_) => panic!("admitted past the limit"),
    }
}

/// GCRA: a rate of 3 per 3 s admits three calls at once, then refuses the fourth with the
/// time until the next one is due (at most a second, less the time the calls took); keys of
/// another user or another call are counted apart; the refusal counted nothing.
pub async fn a_rate_admits_its_burst_then_refuses_with_the_real_wait(fx: &Fixture) {
    let rate = Rate::new(3, Duration::from_secs(3)).expect("a rate");
    let updates = LimitKey::Updates(user("conf-rate"));
    for n in 0..3 {
        let admitted = fx.limits.admit(&updates, rate).await.expect("admit");
        assert!(
            matches!(admitted, Admission::Admitted(_)),
            "call {n} refused"
        );
    }
    let wait = refused_for(fx.limits.admit(&updates, rate).await.expect("admit"));
    assert!(wait <= Duration::from_secs(1), "waits {wait:?}");
    assert!(wait >= Duration::from_millis(500), "waits {wait:?}");
    // The refused call counted nothing: the next wait is no longer than the first.
    let again = refused_for(fx.limits.admit(&updates, rate).await.expect("admit"));
    assert!(again <= wait, "a refusal counted: {again:?} after {wait:?}");
    for other in [
        LimitKey::Lists(user("conf-rate")),
        LimitKey::Updates(user("conf-rate-other")),
    ] {
        let admitted = fx.limits.admit(&other, rate).await.expect("admit");
        assert!(
            matches!(admitted, Admission::Admitted(_)),
            "{other:?} refused"
        );
    }
    (fx.advance)(wait + Duration::from_millis(50)).await;
    let admitted = fx.limits.admit(&updates, rate).await.expect("admit");
    assert!(
        matches!(admitted, Admission::Admitted(_)),
        "refused after the wait"
    );
    refused_for(fx.limits.admit(&updates, rate).await.expect("admit"));
}

/// ForgetUser's part in the limit store (docs/decisions.md, "Rates are GCRA"): every rate and
/// pending-shake place of the user is reset, except the fresh-start count, which would
/// otherwise be a way around the jump cap.
pub async fn forgetting_a_user_resets_every_limit_but_the_fresh_starts(fx: &Fixture) {
    let who = user("conf-forget");
    let rate = Rate::new(1, Duration::from_secs(60)).expect("a rate");
    let rates = [
        LimitKey::Updates(who.clone()),
        LimitKey::Lists(who.clone()),
        LimitKey::Shakes(who.clone()),
        LimitKey::Starts(who.clone()),
    ];
    let places = LimitKey::PendingShakes(who.clone());
    let hold = Duration::from_secs(60);
    let admitted = |a: Admission| matches!(a, Admission::Admitted(_));
    for key in &rates {
        assert!(
            admitted(fx.limits.admit(key, rate).await.expect("admit")),
            "{key:?}"
        );
        refused_for(fx.limits.admit(key, rate).await.expect("admit"));
    }
    assert!(admitted(
        fx.limits.hold(&places, 1, 1, hold).await.expect("hold")
    ));
    refused_for(fx.limits.hold(&places, 2, 1, hold).await.expect("hold"));

    fx.limits.forget(&who).await.expect("forget");
    for key in &rates[..3] {
        let again = fx.limits.admit(key, rate).await.expect("admit");
        assert!(admitted(again), "{key:?} was not reset");
    }
    assert!(admitted(
        fx.limits.hold(&places, 3, 1, hold).await.expect("hold")
    ));
    refused_for(fx.limits.admit(&rates[3], rate).await.expect("admit"));
}

/// Holds: two places of two taken, a third is refused until the first ends; a place given
/// back (twice: still `Ok`) is free at once; every place is free after its end; forgetting a
/// user frees their places and rates.
pub async fn places_are_capped_given_back_and_freed_at_their_end(fx: &Fixture) {
    let key = LimitKey::KeyPendingShakes("conf {key}".to_owned());
    let hold = Duration::from_secs(2);
    for token in [1, 2] {
        let taken = fx.limits.hold(&key, token, 2, hold).await.expect("hold");
        assert!(
            matches!(taken, Admission::Admitted(_)),
            "place {token} refused"
        );
    }
    let wait = refused_for(fx.limits.hold(&key, 3, 2, hold).await.expect("hold"));
    assert!(wait <= hold && wait >= hold / 2, "waits {wait:?}");
    fx.limits.release(&key, 1).await.expect("release");
    fx.limits.release(&key, 1).await.expect("release again");
    let taken = fx.limits.hold(&key, 3, 2, hold).await.expect("hold");
    assert!(
        matches!(taken, Admission::Admitted(_)),
        "a given-back place stayed taken"
    );
    refused_for(fx.limits.hold(&key, 4, 2, hold).await.expect("hold"));
    (fx.advance)(hold + Duration::from_millis(50)).await;
    for token in [5, 6] {
        let taken = fx.limits.hold(&key, token, 2, hold).await.expect("hold");
        assert!(
            matches!(taken, Admission::Admitted(_)),
            "an ended place stayed taken"
        );
    }
    let other = LimitKey::PendingShakes(user("conf-hold"));
    let taken = fx.limits.hold(&other, 5, 1, hold).await.expect("hold");
    assert!(
        matches!(taken, Admission::Admitted(_)),
        "keys are counted apart"
    );
}

/// A call counted against a rate with places taken, all or nothing: refused by a full place
/// (the user's own, or the key's for another user), it counted nothing and took no other
/// place; refused by the rate, it took no place.
pub async fn counting_and_holding_is_all_or_nothing(fx: &Fixture) {
    let rate = Rate::new(2, Duration::from_secs(60)).expect("a rate");
    let key_place = LimitKey::KeyPendingShakes("conf-key".to_owned());
    let call = |who: &str| {
        let who = user(who);
        (
            LimitKey::Shakes(who.clone()),
            vec![(LimitKey::PendingShakes(who), 1), (key_place.clone(), 1)],
        )
    };
    let (u_rate, u_places) = call("conf-all-u");
    let (v_rate, v_places) = call("conf-all-v");
    assert!(holding(fx, rate, &u_rate, &u_places, 1).await.is_ok());
    // Both places are full: either may be named (a cluster takes the key's first).
    let refused = holding(fx, rate, &u_rate, &u_places, 2).await;
    let (which, wait) = refused.expect_err("full");
    let a_place = matches!(which, Limit::PendingShakes | Limit::KeyPendingShakes);
    assert!(a_place, "a place refuses, not {which}");
    assert!(wait <= HOLD && wait >= HOLD / 2, "waits {wait:?}");
    let refused = holding(fx, rate, &v_rate, &v_places, 3).await;
    let (which, _) = refused.expect_err("full");
    assert_eq!(which, Limit::KeyPendingShakes, "the key's place refuses");
    // v's own place was not taken by the refused call.
    assert_one_place_free(fx, &v_places[0].0, 4, "a refusal took a place").await;
    fx.limits.release(&v_places[0].0, 4).await.expect("release");
    // u's refused call counted nothing: a second call passes the rate of two.
    for (place, _) in &u_places {
        fx.limits.release(place, 1).await.expect("release");
    }
    assert!(holding(fx, rate, &u_rate, &u_places, 5).await.is_ok());
    for (place, _) in &u_places {
        fx.limits.release(place, 5).await.expect("release");
    }
    let refused = holding(fx, rate, &u_rate, &u_places, 6).await;
    let (which, wait) = refused.expect_err("the rate");
    assert_eq!(which, Limit::Shakes, "the rate refuses");
    assert!(wait > Duration::from_secs(25), "waits {wait:?}");
    assert_one_place_free(fx, &key_place, 7, "a refusal by the rate took a place").await;
}

/// How long [`counting_and_holding_is_all_or_nothing`] holds its places.
const HOLD: Duration = Duration::from_secs(5);

/// [`LimitStore::admit_holding`] of `places` for `token`, counted under `key` against `rate`.
async fn holding(
    fx: &Fixture,
    rate: Rate,
    key: &LimitKey,
    places: &[(LimitKey, u32)],
    token: u64,
) -> Judged {
    let holding = Holding {
        key,
        rate,
        places,
        token,
        hold: HOLD,
    };
    fx.limits
        .admit_holding(&holding)
        .await
        .expect("admit_holding")
}

/// Asserts that `place`, of one place, is free (`token` takes it).
async fn assert_one_place_free(fx: &Fixture, place: &LimitKey, token: u64, why: &str) {
    let taken = fx.limits.hold(place, token, 1, HOLD).await.expect("hold");
    assert!(matches!(taken, Admission::Admitted(_)), "{why}");
}

/// A write admitted under a fence read before a People Nearby clear of its user is refused
/// and changes nothing, on the plain and the limited path (contract §4.1: the race of an update
/// whose consent check passed against a withdrawal that purged before its write landed);
/// a fence read after the clear admits it, and a clear of another feature fences nothing.
pub async fn a_clear_fences_every_write_admitted_before_it(fx: &Fixture) {
    let baseline = physical(fx).await;
    let pos = position("fenced", 10.0, 10.0, Gender::Male);
    let who = &pos.user_id;
    let stale = fx.locations.fence(who).await.expect("fence");
    let cleared = fx.locations.clear(who, &[Feature::PeopleNearby]).await;
    assert_eq!(cleared.expect("clear"), 0, "nothing to clear yet");

    let written = fx.locations.upsert(pos.clone(), long(), stale).await;
    assert!(
        written
            .as_ref()
            .is_err_and(|e| e.kind == StoreErrorKind::Fenced),
        "a write admitted before the clear: {written:?}"
    );
    let limits = UpdateLimits {
        rate: Rate::new(1_000, Duration::from_secs(1)).expect("a rate"),
        near: None,
        starts: None,
    };
    let limited = fx
        .locations
        .upsert_limited(&pos, long(), &limits, stale)
        .await;
    assert!(
        matches!(&limited, Ok(None))
            || limited
                .as_ref()
                .is_err_and(|e| e.kind == StoreErrorKind::Fenced),
        "the limited path is fenced too: {limited:?}"
    );
    assert_eq!(
        physical(fx).await,
        baseline,
        "a fenced write stored nothing"
    );
    let found = fx.locations.get(Feature::PeopleNearby, who).await;
    assert!(found.expect("get").is_none());

    let fresh = fx.locations.fence(who).await.expect("fence");
    let other = fx.locations.clear(who, &[Feature::Shake]).await;
    other.expect("a clear of Shake");
    fx.locations
        .upsert(pos.clone(), long(), fresh)
        .await
        .expect("a fence read after the clear admits the write");
    let limited = fx
        .locations
        .upsert_limited(&pos, long(), &limits, fresh)
        .await;
    assert!(
        matches!(&limited, Ok(None) | Ok(Some(Limited::Written(_)))),
        "{limited:?}"
    );
    assert!(physical(fx).await > baseline);
}
