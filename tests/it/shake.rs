//! Shake through gRPC on both backends: pairing (two at once, three at once), no match after
//! the window, consent, history purged by deadline and on clear,
//! cancellation, a storm that must be a perfect matching, and two service processes on one
//! Redis pairing across processes.

use std::{collections::HashMap, time::Duration};

use futures_util::future::join_all;
use tonic::{Request, Status};
use vicinity::{
    client::Client,
    config::StoreConfig,
    grpc::pb::{self, Feature, shake_response::Result as Outcome},
};
use vicinity_testing::redis::RedisServer;

use crate::{
    calls::location,
    details::assert_precondition,
    helpers::{Backend, TestApp, on_both_backends, retention, shakes_waiting},
    places::{HOME, Point, crowd},
    redis_backend::stores_on,
};

/// The shake window of these tests: short, so waiting for no one is quick.
const WINDOW: Duration = Duration::from_millis(1_500);

async fn app(backend: Backend) -> TestApp {
    TestApp::spawn(backend, |c| c.shake_window = WINDOW).await
}

/// Shakes and returns the partner's id (or `None`) and the band.
async fn shake(client: &Client, user: &str, at: Point) -> Result<Option<(String, u32)>, Status> {
    shake_at(client, user, location(at)).await
}

/// Shakes at `at` as given (not registered with the leak check: the storm sends thousands of
/// positions, and the other tests cover leaks).
async fn shake_at(
    client: &Client,
    user: &str,
    at: pb::Location,
) -> Result<Option<(String, u32)>, Status> {
    let request = Request::new(pb::ShakeRequest {
        user_id: user.to_owned(),
        location: Some(at),
    });
    let reply = client.shake().shake(request).await?.into_inner();
    Ok(match reply.result.expect("a result") {
        Outcome::Match(m) => Some((m.user_id, m.distance_m)),
        Outcome::NoMatch(_) => None,
    })
}

async fn consent(app: &TestApp, users: &[&str]) {
    for user in users {
        app.grant(user, Feature::Shake).await.expect("grant");
    }
}

async fn history(client: &Client, user: &str) -> Vec<String> {
    let request = pb::ShakeHistoryRequest {
        user_id: user.to_owned(),
    };
    let reply = client
        .shake()
        .shake_history(request)
        .await
        .expect("history");
    reply
        .into_inner()
        .matches
        .into_iter()
        .map(|m| m.user_id)
        .collect()
}

on_both_backends!(two_users_shaking_at_once_are_paired_with_each_other);
async fn two_users_shaking_at_once_are_paired_with_each_other(backend: Backend) {
    let app = app(backend).await;
    consent(&app, &["ann", "ben"]).await;
    let (a, b) = tokio::join!(
        shake(&app.client, "ann", HOME),
        shake(&app.client, "ben", HOME.offset_m(300.0, 0.0))
    );
    let (a, b) = (
        a.expect("ann").expect("a match"),
        b.expect("ben").expect("a match"),
    );
    assert_eq!(a.0, "ben");
    assert_eq!(b.0, "ann");
    assert_eq!(a.1, b.1, "one band for both");
    assert!(
        a.1 >= 500 && a.1 % 100 == 0,
        "a band, never a distance: {}",
        a.1
    );
    assert_eq!(history(&app.client, "ann").await, ["ben"]);
    assert_eq!(history(&app.client, "ben").await, ["ann"]);
}

on_both_backends!(a_lone_shaker_gets_no_match_after_the_window);
async fn a_lone_shaker_gets_no_match_after_the_window(backend: Backend) {
    let app = app(backend).await;
    consent(&app, &["solo"]).await;
    let started = std::time::Instant::now();
    assert_eq!(shake(&app.client, "solo", HOME).await.expect("shake"), None);
    let took = started.elapsed();
    assert!(
        took >= WINDOW - Duration::from_millis(100) && took < WINDOW * 2,
        "{took:?}"
    );
    assert!(history(&app.client, "solo").await.is_empty());
}

on_both_backends!(three_users_shaking_at_once_make_one_pair_and_one_no_match);
async fn three_users_shaking_at_once_make_one_pair_and_one_no_match(backend: Backend) {
    let app = app(backend).await;
    consent(&app, &["t1", "t2", "t3"]).await;
    let spots = crowd(HOME, 3, 200.0);
    let outcomes = join_all(
        ["t1", "t2", "t3"]
            .iter()
            .zip(&spots)
            .map(|(user, at)| shake(&app.client, user, *at)),
    )
    .await;
    let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("shake")).collect();
    let matched: Vec<_> = outcomes.iter().flatten().collect();
    assert_eq!(matched.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 1);
    let users = ["t1", "t2", "t3"];
    let pairs: HashMap<&str, &str> = users
        .iter()
        .zip(&outcomes)
        .filter_map(|(u, o)| o.as_ref().map(|(p, _)| (*u, p.as_str())))
        .collect();
    for (user, partner) in &pairs {
        assert_eq!(pairs.get(partner), Some(user), "pairs are mutual");
    }
}

// "The nearest of two pending shakes wins" needs two shakes pending at once that do not pair
// with each other: only one user's, which the one-pending-shake-per-user limit now refuses
// (`limits`). The rule is checked on every backend by the conformance suite
// (`the_nearest_pending_shake_wins_and_nobody_pairs_twice`).

on_both_backends!(a_shake_without_consent_is_refused_and_stores_nothing);
async fn a_shake_without_consent_is_refused_and_stores_nothing(backend: Backend) {
    let app = app(backend).await;
    app.grant("nobody", Feature::PeopleNearby)
        .await
        .expect("grant");
    let metadata =
        assert_precondition(shake(&app.client, "nobody", HOME).await, "CONSENT_REQUIRED");
    assert_eq!(
        metadata.get("feature").map(String::as_str),
        Some("FEATURE_SHAKE")
    );
    consent(&app, &["other"]).await;
    assert_eq!(
        shake(&app.client, "other", HOME).await.expect("shake"),
        None,
        "the refused shake was never pending"
    );
}

on_both_backends!(history_is_purged_at_its_deadline_and_on_either_sides_clear);
async fn history_is_purged_at_its_deadline_and_on_either_sides_clear(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.shake_window = WINDOW;
        c.retention = retention(Duration::from_secs(2));
        c.sweep_interval = Duration::from_millis(100);
    })
    .await;
    consent(&app, &["ha", "hb"]).await;
    let (a, b) = tokio::join!(
        shake(&app.client, "ha", HOME),
        shake(&app.client, "hb", HOME)
    );
    assert!(a.expect("ha").is_some() && b.expect("hb").is_some());
    consent(&app, &["hc"]).await;
    let (a, c) = tokio::join!(
        shake(&app.client, "ha", HOME),
        shake(&app.client, "hc", HOME)
    );
    assert!(a.expect("ha").is_some() && c.expect("hc").is_some());
    // Every match is recorded by now: each one's deadline is at most this plus the retention.
    let matched_by = app.store_now_millis().await;
    assert_eq!(history(&app.client, "hb").await, ["ha"]);
    app.clear("hc", Feature::Shake).await.expect("clear");
    assert!(
        history(&app.client, "hc").await.is_empty(),
        "cleared at once"
    );
    // contract §4.5 "both parties": the partner's history no longer shows who cleared.
    assert_eq!(history(&app.client, "ha").await, ["hb"]);
    let export = app.export("hb").await.expect("export");
    assert_eq!(export.shake_history.len(), 1);
    // The embedded store's deadlines follow the manual clock; Redis's follow its own.
    app.wait_for_store_time(matched_by + 2_500).await;
    assert!(
        history(&app.client, "hb").await.is_empty(),
        "purged at its deadline"
    );
}

on_both_backends!(a_cancelled_shake_is_withdrawn);
async fn a_cancelled_shake_is_withdrawn(backend: Backend) {
    let app = TestApp::spawn(backend, |c| c.shake_window = Duration::from_secs(5)).await;
    consent(&app, &["quitter", "joiner"]).await;
    // No deadline: the shake would wait its whole 5 s window. The client goes away after
    // 300 ms (its call future dropped: HTTP/2 resets the stream and the server drops the
    // handler), so only the service's withdraw-on-drop can take the pending shake back.
    let request = Request::new(pb::ShakeRequest {
        user_id: "quitter".into(),
        location: Some(location(HOME)),
    });
    let client = app.client.clone();
    let cancelled = tokio::time::timeout(Duration::from_millis(300), async move {
        client.shake().shake(request).await
    })
    .await;
    assert!(
        cancelled.is_err(),
        "still waiting when cancelled: {cancelled:?}"
    );
    // The dropped call's handler ends and its withdrawal (detached) is done, well before the
    // 5 s window would have ended the shake anyway.
    app.settled_within(Duration::from_secs(2)).await;
    let mut joiner = Request::new(pb::ShakeRequest {
        user_id: "joiner".into(),
        location: Some(location(HOME)),
    });
    joiner.set_timeout(Duration::from_millis(800));
    let reply = app
        .client
        .shake()
        .shake(joiner)
        .await
        .expect("shake")
        .into_inner();
    assert!(
        matches!(reply.result, Some(Outcome::NoMatch(_))),
        "the cancelled shake was withdrawn: {reply:?}"
    );
}

on_both_backends!(a_storm_of_concurrent_shakes_is_a_perfect_matching);
async fn a_storm_of_concurrent_shakes_is_a_perfect_matching(backend: Backend) {
    const SHAKERS: usize = 2_000;
    // The whole suite logs at TRACE (see `capture`), which slows a storm of this size
    // severalfold: a generous store timeout keeps the test about pairing, not speed.
    let app = TestApp::spawn(backend, |c| {
        c.shake_window = Duration::from_secs(3);
        if let StoreConfig::Redis { timeout, .. } = &mut c.store {
            *timeout = Duration::from_secs(10);
        }
    })
    .await;
    let users: Vec<String> = (0..SHAKERS).map(|i| format!("storm-{i}")).collect();
    for chunk in users.chunks(200) {
        join_all(chunk.iter().map(|u| app.grant(u, Feature::Shake))).await;
    }
    let spots = crowd(HOME, SHAKERS, 20_000.0);
    let outcomes = join_all(users.iter().zip(&spots).map(|(u, at)| {
        let client = app.client.clone();
        let at = pb::Location {
            latitude: at.lat,
            longitude: at.lng,
            accuracy_m: 10.0,
        };
        async move { (u.clone(), shake_at(&client, u, at).await) }
    }))
    .await;
    let mut partner_of = HashMap::new();
    for (user, outcome) in outcomes {
        if let Some((partner, _)) = outcome.expect("every shake answers") {
            assert!(partner_of.insert(user, partner).is_none());
        }
    }
    for (user, partner) in &partner_of {
        assert_ne!(user, partner);
        assert_eq!(
            partner_of.get(partner),
            Some(user),
            "{user} → {partner} is one-sided"
        );
    }
    assert!(
        partner_of.len() >= SHAKERS - 2,
        "almost everyone pairs: {}",
        partner_of.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shakes_arriving_at_two_service_processes_are_paired() {
    let redis = RedisServer::start().expect("redis");
    let first = TestApp::spawn(Backend::Memory, |c| {
        c.store = stores_on(&redis);
        c.shake_window = WINDOW;
    })
    .await;
    let second = TestApp::spawn(Backend::Memory, |c| {
        c.store = stores_on(&redis);
        c.shake_window = WINDOW;
    })
    .await;
    consent(&first, &["p1", "p2", "p3", "p4"]).await;
    let client = first.client.clone();
    let pending = tokio::spawn(async move { shake(&client, "p1", HOME).await });
    shakes_waiting(1).await;
    let arriving = shake(&second.client, "p2", HOME).await.expect("shake");
    assert_eq!(arriving.expect("a match").0, "p1");
    let woken = pending
        .await
        .expect("task")
        .expect("shake")
        .expect("a match");
    assert_eq!(
        woken.0, "p2",
        "the waiting side on the other process is woken"
    );
    let (a, b) = tokio::join!(
        shake(&first.client, "p3", HOME),
        shake(&second.client, "p4", HOME)
    );
    assert_eq!(a.expect("p3").expect("match").0, "p4");
    assert_eq!(b.expect("p4").expect("match").0, "p3");
}

on_both_backends!(a_user_who_withdrew_is_matched_by_nobody_whatever_their_pending_shakes);
async fn a_user_who_withdrew_is_matched_by_nobody_whatever_their_pending_shakes(backend: Backend) {
    let app = TestApp::spawn(backend, |c| c.shake_window = Duration::from_secs(2)).await;
    consent(&app, &["wa", "wb"]).await;
    let client = app.client.clone();
    let pending = tokio::spawn(async move { shake(&client, "wa", HOME).await });
    shakes_waiting(1).await;
    // A second shake while the first waits is refused on arrival (one pending shake per user).
    let second = shake(&app.client, "wa", HOME).await;

    let withdrawn = app.withdraw("wa", Feature::Shake).await.expect("withdraw");

    assert_eq!(withdrawn.purged_entries, 1, "the pending shake");
    let late = shake(&app.client, "wb", HOME).await.expect("wb shakes");
    assert_eq!(late, None, "matched with a user who withdrew");
    let outcomes = [pending.await.expect("joins"), second];
    let refused = outcomes
        .iter()
        .filter(|o| {
            o.as_ref()
                .is_err_and(|s| s.code() == tonic::Code::ResourceExhausted)
        })
        .count();
    assert_eq!(refused, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| matches!(o, Ok(None))),
        "{outcomes:?}"
    );
    assert!(history(&app.client, "wb").await.is_empty());
}
