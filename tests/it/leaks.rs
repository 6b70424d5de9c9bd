//! contract §1.5, §4.1: location data is never written to logs, even at TRACE, by any target.

use std::time::Duration;

use tonic::Code;
use vicinity::{
    domain::UserId,
    grpc::pb::{self, Feature, Gender},
    storage::redis::keys,
};

use crate::{
    calls::{list_request, location, millis},
    capture,
    details::assert_reason,
    helpers::{Backend, TestApp, on_both_backends, retention, spawn_app_on},
    places::{HOME, Point},
};

on_both_backends!(tracing_at_trace_level_never_contains_a_location);
async fn tracing_at_trace_level_never_contains_a_location(backend: Backend) {
    let mut app = spawn_app_on(backend).await;
    let start = capture::log_len();
    let (alice, bob, carol) = (HOME, HOME.offset_m(50.0, 0.0), HOME.offset_m(-700.0, 350.0));

    // Every RPC, answered and refused.
    consent_join_and_refuse_an_update(&app, alice, bob, carol).await;
    page_and_refuse_a_bad_token_and_a_bad_latitude(&app, alice).await;
    shake_alone_then_read_and_leave_the_history(&app).await;
    app.leave("alice").await.unwrap();
    app.export("alice").await.unwrap();
    app.clear("alice", Feature::Unspecified).await.unwrap();
    app.withdraw("bob", Feature::PeopleNearby).await.unwrap();
    app.forget("alice").await.unwrap();
    app.health("").await.unwrap();
    assert!(app.stop().await.is_some(), "the server stopped");

    let log = capture::log_since(start);
    assert_the_capture_works_and_holds_no_location(&log, backend);
}

/// Grants, reads consent and updates alice at `alice`, joins bob and dave, and has carol's
/// update refused for want of consent.
async fn consent_join_and_refuse_an_update(app: &TestApp, alice: Point, bob: Point, carol: Point) {
    app.grant("alice", Feature::PeopleNearby).await.unwrap();
    app.grant("alice", Feature::Shake).await.unwrap();
    app.consent("alice").await.unwrap();
    assert!(app.update("alice", alice, Gender::Female).await.is_ok());
    app.join("bob", bob, Gender::Male).await;
    app.join("dave", carol.offset_m(20.0, 20.0), Gender::Male)
        .await;
    let refused = app.update("carol", carol, Gender::Male).await;
    assert_reason(refused, Code::FailedPrecondition, "CONSENT_REQUIRED");
}

/// Lists bob's first two pages, then has a bad page token and an update of alice (at
/// `alice`) with a latitude out of range refused.
async fn page_and_refuse_a_bad_token_and_a_bad_latitude(app: &TestApp, alice: Point) {
    let first = app
        .list_with(pb::ListNearbyRequest {
            limit: 1,
            ..list_request("bob")
        })
        .await
        .unwrap();
    let mut next = list_request("bob");
    next.limit = 1;
    next.page_token = first.next_page_token;
    app.list_with(next).await.unwrap();
    let mut bad_token = list_request("bob");
    bad_token.page_token = "00ff".into();
    let refused = app.list_with(bad_token).await;
    assert_reason(refused, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let half_bad = pb::UpdateLocationRequest {
        user_id: "alice".into(),
        location: Some(pb::Location {
            latitude: 91.0,
            ..location(alice)
        }),
        gender: 0,
    };
    let refused = app.update_location(half_bad).await;
    assert_reason(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
}

/// Alice shakes alone (no match), reads her Shake history and leaves Shake.
async fn shake_alone_then_read_and_leave_the_history(app: &TestApp) {
    let shake = pb::ShakeRequest {
        user_id: "alice".into(),
        location: Some(location(HOME.offset_m(5.0, 5.0))),
    };
    let mut shake = tonic::Request::new(shake);
    shake.set_timeout(std::time::Duration::from_millis(400));
    assert!(
        app.client.shake().shake(shake).await.is_ok(),
        "a lone shake: no match"
    );
    let history = pb::ShakeHistoryRequest {
        user_id: "alice".into(),
    };
    assert!(app.client.shake().shake_history(history).await.is_ok());
    let leave_shake = pb::LeaveShakeRequest {
        user_id: "alice".into(),
    };
    assert!(app.client.shake().leave_shake(leave_shake).await.is_ok());
}

/// The captured `log` holds service, audit and transport events (and Redis's on `backend`
/// Redis), and no location.
fn assert_the_capture_works_and_holds_no_location(log: &str, backend: Backend) {
    // The capture demonstrably works: service events, audit events and transport traces.
    assert!(
        log.contains("audit") && log.contains("consent_granted"),
        "{log}"
    );
    assert!(
        log.contains("h2::") && log.contains("TRACE"),
        "no transport trace"
    );
    assert!(log.contains("user_forgotten") && log.contains("alice"));
    if backend == Backend::Redis {
        assert!(log.contains("vicinity::storage::redis"), "not on Redis");
    }
    let leaks = capture::leaks_in(log);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Replaces `key` with a plain string, so every script touching it fails with WRONGTYPE.
fn corrupt(app: &TestApp, key: &str) {
    let redis = app.redis().expect("a Redis app");
    assert_eq!(redis.cli(&["set", key, "not-a-zset"]).expect("set"), "OK");
}

/// Redis error replies and failed scripts are logged (as they should be, for the operator),
/// and none of them carries a location: not the failing call's, and not one read from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_errors_in_the_log_never_contain_a_location_on_redis() {
    let mut app = TestApp::spawn(Backend::Redis, |config| {
        config.retention = retention(Duration::from_secs(2));
    })
    .await;
    let start = capture::log_len();
    let (home, near, far) = (HOME, HOME.offset_m(40.0, 0.0), HOME.offset_m(9_000.0, 0.0));
    app.join("alice", home, Gender::Female).await;
    app.grant("bob", Feature::PeopleNearby).await.unwrap();
    let bob = app.update("bob", near, Gender::Male).await.unwrap();

    // A broken cell: writes into it and reads of it fail.
    corrupt(&app, &keys::cell_key(home.cell()));
    let internal = |reply| assert_reason(reply, Code::Internal, "INTERNAL");
    internal(app.update("alice", home, Gender::Female).await.map(drop));
    internal(app.list("bob").await.map(drop));
    // A broken user-record hash: the cell write succeeds, the record write fails.
    let carol = UserId::parse("carol", "user_id").unwrap();
    corrupt(&app, &keys::user_key(&carol));
    app.grant("carol", Feature::PeopleNearby).await.unwrap();
    internal(app.update("carol", far, Gender::Female).await.map(drop));
    internal(app.export("carol").await.map(drop));
    internal(app.clear("carol", Feature::Unspecified).await.map(drop));
    // The sweeper meets the broken cell at bob's deadline.
    app.wait_for_store_time(millis(bob.purge_at.as_ref()) + 600)
        .await;
    // And a Redis that is gone.
    app.redis_mut().expect("a Redis app").kill().expect("kill");
    let gone = app.update("bob", near, Gender::Male).await;
    assert_reason(gone, Code::Unavailable, "STORE_UNAVAILABLE");
    assert!(app.stop().await.is_some(), "the server stopped");

    let log = capture::log_since(start);
    assert!(
        log.contains("store error") && log.contains("WRONGTYPE"),
        "{log}"
    );
    assert!(
        log.contains("purge sweep failed"),
        "the sweeper met no error"
    );
    let leaks = capture::leaks_in(&log);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[test]
fn the_leak_check_finds_a_coordinate_in_any_of_its_forms() {
    let at = Point {
        lat: -33.856_784_123,
        lng: 151.215_297_654,
    };
    capture::remember(at.lat, at.lng);
    let cell = at.cell();
    let latlng = h3o::LatLng::new(at.lat, at.lng).unwrap();
    let lines = [
        format!("position lat={} lng={}", at.lat, at.lng),
        format!("stored={:.4}", at.lng),
        "truncated=-33.856 and nothing else".to_owned(),
        format!("as f32 {}", at.lat as f32),
        format!("{latlng:?}"),
        format!("LatLng {{ lat_rad: {} }}", at.lat.to_radians()),
        format!("cell={cell}"),
        format!("cell={}", u64::from(cell)),
        format!("cell={:X}", u64::from(cell)),
    ];
    for line in lines {
        assert!(!capture::leaks_in(&line).is_empty(), "missed in {line:?}");
    }
    let harmless = "user_id=alice purged_entries=1 time.busy=39.9µs stream_id=StreamId(33)";
    assert!(capture::leaks_in(harmless).is_empty());
}
