//! The abuse limits of contract §4.3 through gRPC, on both backends: each limit refuses at its
//! threshold with `RESOURCE_EXHAUSTED`, `RetryInfo` (the real wait, to a second) and
//! `ErrorInfo` `RATE_LIMITED` naming the limit, and a refused call changes nothing; the jump
//! cap refuses a teleport and lets a fast train through; limits hold across two service
//! processes on one Redis.

use std::time::{Duration, Instant};

use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use vicinity::{
    config::Config,
    domain::limits::{Policy, Rate},
    grpc::pb::{self, Feature, Gender},
};

use crate::{
    calls::{list_request, location, millis},
    details::{assert_precondition, error_info, refusal},
    helpers::{Backend, TestApp, on_both_backends, shakes_waiting},
    places::{HOME, Point},
};

fn rate(text: &str) -> Rate {
    text.parse().expect("a rate")
}

/// Asserts a rate-limit refusal of `limit` whose RetryInfo wait is `wait`, to a second.
#[track_caller]
fn assert_limited<T: std::fmt::Debug>(reply: Result<T, Status>, limit: &str, wait: Duration) {
    let status = refusal(reply);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, metadata) = error_info(&status).expect("an ErrorInfo detail");
    assert_eq!(reason, "RATE_LIMITED", "{status:?}");
    assert_eq!(metadata.get("limit").map(String::as_str), Some(limit));
    let delay = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo delay");
    let off = delay.abs_diff(wait);
    assert!(
        off <= Duration::from_secs(1),
        "waits {delay:?}, not {wait:?}"
    );
}

async fn app_with(backend: Backend, policy: impl FnOnce(&mut Policy)) -> TestApp {
    TestApp::spawn(backend, |c: &mut Config| policy(&mut c.policy)).await
}

on_both_backends!(updates_past_the_rate_are_refused_with_the_real_wait_and_change_nothing);
async fn updates_past_the_rate_are_refused_with_the_real_wait_and_change_nothing(backend: Backend) {
    let app = app_with(backend, |p| p.updates = rate("3/1m")).await;
    app.grant("lim-u", Feature::PeopleNearby)
        .await
        .expect("grant");
    for step in 0..3 {
        let at = HOME.offset_m(100.0 * f64::from(step), 0.0);
        app.update("lim-u", at, Gender::Female)
            .await
            .expect("update");
    }
    let before = app.export("lim-u").await.expect("export");
    let far = HOME.offset_m(1_500.0, 0.0);

    let refused = app.update("lim-u", far, Gender::Male).await;

    // The burst was spent at once: the next update is due one interval (20 s) on.
    assert_limited(refused, "updates", Duration::from_secs(20));
    let after = app.export("lim-u").await.expect("export");
    assert_eq!(
        before.locations, after.locations,
        "a refused update changed the entry"
    );
    // Another user is counted apart.
    app.join("lim-other", HOME, Gender::Male).await;
}

on_both_backends!(lists_past_the_rate_are_refused_counting_every_page);
async fn lists_past_the_rate_are_refused_counting_every_page(backend: Backend) {
    let app = app_with(backend, |p| p.lists = rate("2/1m")).await;
    for (user, north) in [("lim-l", 0.0), ("lim-l2", 30.0), ("lim-l3", 60.0)] {
        app.join(user, HOME.offset_m(north, 0.0), Gender::Female)
            .await;
    }
    let first = app
        .list_with(pb::ListNearbyRequest {
            limit: 1,
            ..list_request("lim-l")
        })
        .await
        .expect("first page");
    let second = app
        .list_with(pb::ListNearbyRequest {
            limit: 1,
            page_token: first.next_page_token,
            ..list_request("lim-l")
        })
        .await
        .expect("second page");
    assert!(!second.users.is_empty(), "the second page was served");

    assert_limited(app.list("lim-l").await, "lists", Duration::from_secs(30));
    app.list("lim-l2")
        .await
        .expect("another viewer is counted apart");
}

on_both_backends!(shakes_are_limited_per_user_one_pending_at_a_time_and_per_key);
async fn shakes_are_limited_per_user_one_pending_at_a_time_and_per_key(backend: Backend) {
    let window = Duration::from_secs(2);
    let app = TestApp::spawn(backend, |c| {
        c.shake_window = window;
        c.policy.shakes = rate("2/1m");
        c.policy.key_pending_shakes = 1;
    })
    .await;
    for user in ["lim-s", "lim-s2"] {
        app.grant(user, Feature::Shake).await.expect("grant");
    }
    let shake = |user: &'static str| {
        let client = app.client.clone();
        async move {
            let request = Request::new(pb::ShakeRequest {
                user_id: user.to_owned(),
                location: Some(location(HOME.offset_m(0.0, 5_000.0))),
            });
            client.shake().shake(request).await
        }
    };
    let started = Instant::now();
    let pending = tokio::spawn(shake("lim-s"));
    shakes_waiting(1).await;
    let left = window.saturating_sub(started.elapsed());

    // A second shake of the same user while the first waits; another user's shake through
    // the same key while the key's one place is taken (it would have caught lim-s's).
    assert_limited(shake("lim-s").await, "pending_shakes", left);
    assert_limited(shake("lim-s2").await, "key_pending_shakes", left);

    let ended = pending.await.expect("joins").expect("shake").into_inner();
    assert!(matches!(
        ended.result,
        Some(pb::shake_response::Result::NoMatch(_))
    ));
    shake("lim-s2")
        .await
        .expect("the key's place is free again");
    // The refused second shake counted nothing: lim-s has one more, then the rate refuses.
    shake("lim-s")
        .await
        .expect("the second shake of two a minute");
    let rate_wait = match backend {
        Backend::Memory => Duration::from_secs(30),
        Backend::Redis => Duration::from_secs(30).saturating_sub(started.elapsed()),
    };
    assert_limited(shake("lim-s").await, "shakes", rate_wait);
}

on_both_backends!(one_key_flooding_is_refused_on_every_method);
async fn one_key_flooding_is_refused_on_every_method(backend: Backend) {
    let app = app_with(backend, |p| p.key_calls = rate("5/1m")).await;
    for _ in 0..5 {
        app.consent("lim-k").await.expect("within the ceiling");
    }
    assert_limited(
        app.consent("lim-k").await,
        "key_calls",
        Duration::from_secs(12),
    );
    assert_limited(
        app.list("lim-k").await,
        "key_calls",
        Duration::from_secs(12),
    );
    app.advance(Duration::from_secs(12));
    app.consent("lim-k").await.expect("one more after the wait");
}

/// Time the store sees pass: the manual clock on the embedded store, a real wait on Redis.
async fn pass(app: &TestApp, by: Duration) {
    match app.backend {
        Backend::Memory => app.advance(by),
        Backend::Redis => tokio::time::sleep(by).await,
    }
}

on_both_backends!(the_jump_cap_refuses_a_teleport_and_lets_a_fast_train_through);
async fn the_jump_cap_refuses_a_teleport_and_lets_a_fast_train_through(backend: Backend) {
    let app = app_with(backend, |p| p.jump = Policy::default().jump).await;
    app.join("lim-j", HOME, Gender::Female).await;
    let before = app.export("lim-j").await.expect("export");
    pass(&app, Duration::from_secs(2)).await;

    // 300 km (Beijing to Shijiazhuang) two seconds later.
    let teleport = app
        .update("lim-j", HOME.offset_m(-300_000.0, 0.0), Gender::Female)
        .await;

    assert_precondition(teleport, "IMPLAUSIBLE_JUMP");
    let after = app.export("lim-j").await.expect("export");
    assert_eq!(
        before.locations, after.locations,
        "the refusal renewed or moved the entry"
    );
    // A fast train: 350 km/h for 30 s is 2.9 km, beyond what always passes.
    pass(&app, Duration::from_secs(28)).await;
    let train = HOME.offset_m(2_900.0, 0.0);
    let moved = app
        .update("lim-j", train, Gender::Female)
        .await
        .expect("the train");
    assert!(millis(moved.purge_at.as_ref()) > millis(after.locations[0].purge_at.as_ref()));
}

// An update the jump cap refuses changes nothing, its rate included
// (contract §4.3), so refused teleports do not use up the user's updates.
on_both_backends!(an_update_refused_by_the_jump_cap_does_not_count_against_the_rate);
async fn an_update_refused_by_the_jump_cap_does_not_count_against_the_rate(backend: Backend) {
    let app = app_with(backend, |p| {
        p.updates = rate("2/1m");
        p.jump = Policy::default().jump;
    })
    .await;
    app.join("lim-jr", HOME, Gender::Female).await;
    for _ in 0..3 {
        let teleport = app
            .update("lim-jr", HOME.offset_m(-300_000.0, 0.0), Gender::Female)
            .await;
        assert_precondition(teleport, "IMPLAUSIBLE_JUMP");
    }

    let stayed = app
        .update("lim-jr", HOME.offset_m(50.0, 0.0), Gender::Female)
        .await;

    stayed.expect("the second update of the burst, the refused jumps not counted");
    let third = app.update("lim-jr", HOME, Gender::Female).await;
    assert_limited(third, "updates", Duration::from_secs(30));
}

// A Clear, or a withdrawal and a new grant, leaves no entry to judge a jump
// from; such fresh starts count against their own rate, so they cannot carry a user past the
// jump cap more often than it allows (contract §4.3).
on_both_backends!(
    a_clear_or_a_withdrawal_does_not_reset_the_jump_cap_more_than_the_start_rate_allows
);
async fn a_clear_or_a_withdrawal_does_not_reset_the_jump_cap_more_than_the_start_rate_allows(
    backend: Backend,
) {
    let app = app_with(backend, |p| {
        p.jump = Policy::default().jump;
        p.starts = rate("3/1h");
    })
    .await;
    let far = |step: u32| HOME.offset_m(-300_000.0 * f64::from(step), 0.0);
    let update = |at: Point| app.update("lim-s", at, Gender::Female);
    let nearby = Feature::PeopleNearby;
    // Start one: the first update ever. Moves nearby are no starts.
    app.join("lim-s", HOME, Gender::Female).await;
    for step in 1..=3 {
        let near = HOME.offset_m(100.0 * f64::from(step), 0.0);
        update(near).await.expect("a move nearby");
    }
    assert_precondition(update(far(1)).await, "IMPLAUSIBLE_JUMP");
    // Start two: after a Clear the teleport is a fresh start.
    app.clear("lim-s", nearby).await.expect("clear");
    update(far(1)).await.expect("start two");
    // Start three: after a withdrawal and a new grant.
    app.withdraw("lim-s", nearby).await.expect("withdraw");
    app.grant("lim-s", nearby).await.expect("grant");
    update(far(2)).await.expect("start three");
    app.clear("lim-s", nearby).await.expect("clear");

    let fourth = update(far(3)).await;

    // 3/1h: one start every 20 minutes once the burst is spent.
    assert_limited(fourth, "starts", Duration::from_secs(20 * 60));
    let export = app.export("lim-s").await.expect("export");
    assert!(export.locations.is_empty(), "the refused start wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_service_processes_on_one_redis() {
    let first = TestApp::spawn(Backend::Redis, |c| {
        two_updates_a_minute_and_one_pending_shake(&mut c.policy);
        c.shake_window = Duration::from_secs(2);
    })
    .await;
    let second = spawn_a_second_node_on_the_redis_of(&first).await;
    assert_both_nodes_count_updates_against_one_limit(&first, &second).await;
    assert_a_pending_shake_on_one_node_counts_on_the_other(&first, &second).await;
}

/// The limits of the two-node test: 2 updates a minute, one pending shake per key.
fn two_updates_a_minute_and_one_pending_shake(p: &mut Policy) {
    p.updates = rate("2/1m");
    p.key_pending_shakes = 1;
}

/// A second service node on `first`'s Redis, with the same limits and shake window.
async fn spawn_a_second_node_on_the_redis_of(first: &TestApp) -> TestApp {
    let target = vicinity::storage::redis::Target::single(first.redis().expect("redis").url());
    TestApp::spawn(Backend::Memory, |c| {
        c.store = vicinity::config::StoreConfig::Redis {
            locations: target.clone(),
            consents: target,
            allow_persistent: false,
            timeout: Duration::from_secs(1),
            consent_cache: vicinity::config::DEFAULT_CONSENT_CACHE,
        };
        two_updates_a_minute_and_one_pending_shake(&mut c.policy);
        c.shake_window = Duration::from_secs(2);
    })
    .await
}

/// One update on each node spends the rate of 2 a minute: the next is refused on both.
async fn assert_both_nodes_count_updates_against_one_limit(first: &TestApp, second: &TestApp) {
    first
        .grant("lim-2", Feature::PeopleNearby)
        .await
        .expect("grant");
    first
        .update("lim-2", HOME, Gender::Male)
        .await
        .expect("first node");
    second
        .update("lim-2", HOME, Gender::Male)
        .await
        .expect("second node");

    assert_limited(
        first.update("lim-2", HOME, Gender::Male).await,
        "updates",
        Duration::from_secs(30),
    );
    assert_limited(
        second.update("lim-2", HOME, Gender::Male).await,
        "updates",
        Duration::from_secs(30),
    );
}

/// A shake pending on the first node fills the key's one place: the second node refuses the next.
async fn assert_a_pending_shake_on_one_node_counts_on_the_other(first: &TestApp, second: &TestApp) {
    // The key's one pending shake, taken on the first node, is taken for the second too.
    for user in ["lim-2a", "lim-2b"] {
        first.grant(user, Feature::Shake).await.expect("grant");
    }
    let client = first.client.clone();
    let pending = tokio::spawn(async move {
        let request = pb::ShakeRequest {
            user_id: "lim-2a".to_owned(),
            location: Some(location(HOME)),
        };
        client.shake().shake(request).await
    });
    shakes_waiting(1).await;
    let request = pb::ShakeRequest {
        user_id: "lim-2b".to_owned(),
        location: Some(location(HOME)),
    };
    let refused = second.client.shake().shake(request).await;
    assert_limited(refused, "key_pending_shakes", Duration::from_millis(1_800));
    pending.await.expect("joins").expect("no partner");
}

on_both_backends!(scraping_an_area_from_one_account_is_stopped_after_twelve_positions);
async fn scraping_an_area_from_one_account_is_stopped_after_twelve_positions(backend: Backend) {
    let app = app_with(backend, |p| *p = Policy::default()).await;
    app.join(
        "lim-victim",
        HOME.offset_m(3_000.0, 4_000.0),
        Gender::Female,
    )
    .await;
    app.grant("lim-scraper", Feature::PeopleNearby)
        .await
        .expect("grant");
    // The scraper walks a 10 × 10 km square in 1 km steps (121 positions, each step within
    // what the jump cap always allows), listing at each, until a limit stops it.
    let walk = (0..11).flat_map(|row| (0..11).map(move |col| (row, col)));
    let (mut positions, mut lists, mut refused) = (0, 0, None);
    for (row, col) in walk {
        let east = if row % 2 == 0 { col } else { 10 - col };
        let at = HOME.offset_m(1_000.0 * f64::from(row), 1_000.0 * f64::from(east));
        match app.update("lim-scraper", at, Gender::Male).await {
            Ok(_) => positions += 1,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
        app.list("lim-scraper")
            .await
            .expect("a list within the rate");
        lists += 1;
    }

    // The default update rate's burst: 12 positions (and 12 lists), then one every 5 s.
    assert_eq!((positions, lists), (12, 12));
    let refused = refused.expect("stopped inside the square");
    assert_limited(Err::<(), _>(refused), "updates", Duration::from_secs(5));
}
