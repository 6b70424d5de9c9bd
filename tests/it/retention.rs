//! SPEC §4.2: every entry is gone at `purge_at = last_active + retention`, and expired data is
//! never returned. The server runs on a manual clock, so nothing here sleeps for a minute.

use std::time::{Duration, Instant};

use vicinity::grpc::pb::{ConsentState, Feature, Gender};

use crate::{
    calls::millis,
    details::assert_location_required,
    helpers::{TestApp, retention, spawn_app_with},
    places::HOME,
};

const RETENTION: Duration = Duration::from_secs(60);

async fn app_with_one_minute_retention() -> TestApp {
    spawn_app_with(|config| config.retention = retention(RETENTION)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_is_listed_until_purge_at_and_never_after() {
    let started = Instant::now();
    let app = app_with_one_minute_retention().await;
    app.join("alice", HOME, Gender::Female).await;
    let purge_at = app.now_millis() + 60_000;
    app.join("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await;
    app.advance(Duration::from_secs(30));
    // Bob's heartbeat keeps him in; Alice sends none.
    app.update("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await
        .unwrap();

    app.advance(Duration::from_millis(29_999));
    assert_eq!(app.now_millis(), purge_at - 1);
    assert_eq!(app.listed("bob").await, ["alice"]);

    app.advance(Duration::from_millis(1));
    assert!(app.listed("bob").await.is_empty(), "listed at purge_at");
    let export = app.export("alice").await.unwrap();
    assert!(
        export.locations.is_empty(),
        "exported at purge_at: {export:?}"
    );
    assert_location_required(app.list("alice").await);
    assert!(started.elapsed() < RETENTION / 4, "the test slept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_is_a_heartbeat_that_moves_the_deadlines() {
    let app = app_with_one_minute_retention().await;
    app.grant("alice", Feature::PeopleNearby).await.unwrap();
    let first = app.update("alice", HOME, Gender::Female).await.unwrap();
    app.advance(Duration::from_secs(45));

    let second = app.update("alice", HOME, Gender::Female).await.unwrap();

    let (first_purge, second_purge) = (
        millis(first.purge_at.as_ref()),
        millis(second.purge_at.as_ref()),
    );
    assert_eq!(second_purge - first_purge, 45_000);
    assert_eq!(second_purge, app.now_millis() + 60_000);
    assert_eq!(millis(second.visible_until.as_ref()), second_purge);
    app.advance(Duration::from_secs(59));
    let export = app.export("alice").await.unwrap();
    assert_eq!(
        millis(export.locations[0].purge_at.as_ref()),
        second_purge,
        "{export:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_left_is_purged_one_retention_after_leaving() {
    let app = app_with_one_minute_retention().await;
    app.join("alice", HOME, Gender::Female).await;
    app.join("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await;
    app.advance(Duration::from_secs(20));
    app.leave("alice").await.unwrap();
    app.advance(Duration::from_secs(39));
    app.update("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await
        .unwrap();
    assert_eq!(app.listed("bob").await, ["alice"], "visible until purge_at");

    app.advance(Duration::from_secs(21));

    assert!(app.listed("bob").await.is_empty());
    assert!(app.export("alice").await.unwrap().locations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_outlives_the_retention_window() {
    let app = app_with_one_minute_retention().await;
    app.join("alice", HOME, Gender::Female).await;

    app.advance(Duration::from_secs(3_600));

    let export = app.export("alice").await.unwrap();
    assert!(export.locations.is_empty());
    assert_eq!(export.consent_history.len(), 1);
    assert_eq!(export.consents[0].state(), ConsentState::Granted);
    app.update("alice", HOME, Gender::Female).await.unwrap();
}
