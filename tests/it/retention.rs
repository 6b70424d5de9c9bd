//! contract §4.2: every entry is gone at `purge_at = last_active + retention`, and expired data is
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
    assert_exported_purge_at(&app, second_purge).await;
}

/// Asserts that alice's export shows `purge_at` on her (first) location.
async fn assert_exported_purge_at(app: &TestApp, purge_at: i64) {
    let export = app.export("alice").await.unwrap();
    assert_eq!(
        millis(export.locations[0].purge_at.as_ref()),
        purge_at,
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

/// The same rules on Redis. The Redis store takes time from the Redis server (`TIME` in its
/// scripts), which the manual clock does not move, so these run in real time with a 2 s
/// retention and bounded sleeps (2-4 s each). Deadlines come from the replies and the store's
/// time is read around each call, so no check depends on how fast a call is.
///
/// Cell members hold their deadline in whole seconds (`storage::redis::keys`): on Redis a user
/// leaves the lists at `visible_until` rounded down to the second, up to 1 s early (never
/// late), while records, exports and the replies keep milliseconds. "Listed until" checks here
/// use that rounded time; "never after" checks use the exact one.
mod on_redis {
    use std::time::{Duration, Instant};

    use vicinity::grpc::pb::{ConsentState, Feature, Gender};

    use crate::{
        calls::millis,
        details::assert_location_required,
        helpers::{Backend, TestApp, retention},
        places::{HOME, Point},
    };

    const RETENTION: Duration = Duration::from_secs(2);
    const RETENTION_MS: i64 = 2_000;
    /// How long any one of these tests may take.
    const BOUND: Duration = Duration::from_secs(10);

    async fn app_with_two_second_retention() -> TestApp {
        TestApp::spawn(Backend::Redis, |config| {
            config.retention = retention(RETENTION)
        })
        .await
    }

    /// Grants consent and enters People Nearby at `at`; returns `purge_at`.
    async fn enter(app: &TestApp, user: &str, at: Point, gender: Gender) -> i64 {
        app.grant(user, Feature::PeopleNearby).await.unwrap();
        let reply = app.update(user, at, gender).await.unwrap();
        millis(reply.purge_at.as_ref())
    }

    /// Where a user's cell member stops being listed: `visible_until` rounded down to the
    /// second.
    fn listed_until(visible_until: i64) -> i64 {
        visible_until.div_euclid(1_000) * 1_000
    }

    /// Bob sends a heartbeat and lists: the ids he sees, and the store's time after.
    /// (His own entry goes up to 1 s early too, so he renews it before each look.)
    async fn bob_looks(app: &TestApp) -> (Vec<String>, i64) {
        let bob_at = HOME.offset_m(40.0, 0.0);
        app.update("bob", bob_at, Gender::Male).await.unwrap();
        let listed = app.listed("bob").await;
        (listed, app.store_now_millis().await)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_is_listed_until_purge_at_and_never_after() {
        let started = Instant::now();
        let app = app_with_two_second_retention().await;
        let purge_at = enter(&app, "alice", HOME, Gender::Female).await;
        enter(&app, "bob", HOME.offset_m(40.0, 0.0), Gender::Male).await;

        // Bob's heartbeats keep him in; Alice sends none.
        app.wait_for_store_time(listed_until(purge_at) - 300).await;
        let (listed, after) = bob_looks(&app).await;
        assert!(after < listed_until(purge_at), "fixture: listed in time");
        assert_eq!(listed, ["alice"]);

        app.wait_for_store_time(purge_at).await;
        assert!(bob_looks(&app).await.0.is_empty(), "listed at purge_at");
        let export = app.export("alice").await.unwrap();
        assert!(
            export.locations.is_empty(),
            "exported at purge_at: {export:?}"
        );
        assert_location_required(app.list("alice").await);
        assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_update_is_a_heartbeat_that_moves_the_deadlines() {
        let app = app_with_two_second_retention().await;
        let first_purge = enter(&app, "alice", HOME, Gender::Female).await;
        // Long enough that the second deadline (rounded down) falls after the first one.
        app.wait_for_store_time(first_purge - RETENTION_MS + 1_500)
            .await;

        let before = app.store_now_millis().await;
        let second = app.update("alice", HOME, Gender::Female).await.unwrap();
        let after = app.store_now_millis().await;

        let second_purge = millis(second.purge_at.as_ref());
        // Both deadlines are whole seconds on Redis: a 1.5 s wait moves them by 1 s or more.
        assert!(second_purge - first_purge >= 1_000, "moved by the wait");
        assert!(
            (before + RETENTION_MS - crate::helpers::ROUNDING_MS..=after + RETENTION_MS)
                .contains(&second_purge),
            "{second_purge} is one retention after {before}..={after}"
        );
        assert_eq!(millis(second.visible_until.as_ref()), second_purge);
        app.wait_for_store_time(first_purge + 100).await;
        super::assert_exported_purge_at(&app, second_purge).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_user_who_left_is_purged_one_retention_after_leaving() {
        let app = app_with_two_second_retention().await;
        let joined_purge = enter(&app, "alice", HOME, Gender::Female).await;
        enter(&app, "bob", HOME.offset_m(40.0, 0.0), Gender::Male).await;
        app.wait_for_store_time(joined_purge - RETENTION_MS + 1_500)
            .await;
        let left = app.leave("alice").await.unwrap();
        let left_purge = millis(left.purge_at.as_ref());
        assert!(
            left_purge - joined_purge >= 1_000,
            "leaving renews purge_at"
        );

        // Past the deadline Alice had before leaving: still visible until the new one.
        app.wait_for_store_time(joined_purge + 100).await;
        let (listed, after) = bob_looks(&app).await;
        assert!(after < listed_until(left_purge), "fixture: listed in time");
        assert_eq!(listed, ["alice"], "visible until purge_at");

        app.wait_for_store_time(left_purge).await;

        assert!(bob_looks(&app).await.0.is_empty());
        assert!(app.export("alice").await.unwrap().locations.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consent_outlives_the_retention_window() {
        let app = app_with_two_second_retention().await;
        let purge_at = enter(&app, "alice", HOME, Gender::Female).await;

        app.wait_for_store_time(purge_at).await;

        let export = app.export("alice").await.unwrap();
        assert!(export.locations.is_empty());
        assert_eq!(export.consent_history.len(), 1);
        assert_eq!(export.consents[0].state(), ConsentState::Granted);
        app.update("alice", HOME, Gender::Female).await.unwrap();
    }
}
