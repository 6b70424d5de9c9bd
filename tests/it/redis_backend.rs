//! The service on Redis, through gRPC: purges proven by counting what Redis physically holds,
//! two service processes on one Redis, faults (pause, kill, restart), the start-up persistence
//! check, and a Redis Cluster losing a master under load.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join_all;
use tokio::net::TcpListener;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;
use vicinity::{
    config::{Config, StoreConfig},
    grpc::pb::{self, Feature, Gender},
    server::{self, ServerError},
    storage::redis::Target,
};
use vicinity_testing::redis::{RedisCluster, RedisServer};

use crate::{
    calls::millis,
    helpers::{TestApp, eventually, manual_clock, retention, spawn_app_with, test_config},
    places::{HOME, crowd},
};

/// How long after `purge_at` data may physically remain (contract §4.2).
const PURGE_BOUND: Duration = Duration::from_secs(5);

/// The location store on `locations` and the consent store on `consents`, each call bounded
/// by 1 s, with the default consent cache.
pub(crate) fn redis_store(locations: Target, consents: Target) -> StoreConfig {
    StoreConfig::Redis {
        locations,
        consents,
        allow_persistent: false,
        timeout: crate::helpers::REDIS_TIMEOUT,
        consent_cache: vicinity::config::DEFAULT_CONSENT_CACHE,
    }
}

/// Both stores on the one Redis `redis`, as [`redis_store`] configures them.
pub(crate) fn stores_on(redis: &RedisServer) -> StoreConfig {
    redis_store(target_of(redis), target_of(redis))
}

fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// Writes `count` unrelated live keys with a one-hour TTL: with that many volatile keys,
/// Redis's sampling expiry alone would leave expired keys in memory for minutes.
async fn fill(server: &RedisServer, count: usize) {
    let client = redis::Client::open(server.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for start in (0..count).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(count) {
            pipe.cmd("SET")
                .arg(format!("filler:{i}"))
                .arg("x")
                .arg("PX")
                .arg(3_600_000)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("fill");
    }
}

/// Every key of the location store that is not filler (KEYS hides expired keys, so this is
/// only used to name what DBSIZE counted).
fn location_keys(server: &RedisServer) -> Vec<String> {
    let keys = server.cli(&["--raw", "keys", "vc:*"]).expect("keys");
    keys.lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect()
}

/// Keys physically held (`DBSIZE`, which counts expired keys not yet reclaimed), less the
/// live Shake tombstones and clear marks of Clears: they hold no location, match or user id
/// (a pseudonym or a shard, and a time) and expire two minutes after the Clear, by design
/// (see `storage/redis/keys.rs`).
fn held_keys(server: &RedisServer) -> u64 {
    server.dbsize().expect("dbsize") - tombstones(server)
}

/// Reads the limit keys of `users` and of the open caller (`storage/redis/keys.rs`), which
/// makes Redis reclaim the expired ones at once. They hold no location and expire within
/// their period (a millisecond under these tests' limits), but `DBSIZE` counts an expired key
/// until Redis's expiry sampling finds it among the 100,000 fillers.
fn reclaim_limit_keys(server: &RedisServer, users: &[&str]) {
    let mut keys = vec!["exists".to_owned(), "vc:l:{#6f70656e}:p".to_owned()];
    for user in users {
        keys.extend(["u", "l", "s", "p"].map(|what| format!("vc:l:{{{user}}}:{what}")));
    }
    let args: Vec<&str> = keys.iter().map(String::as_str).collect();
    server.cli(&args).expect("exists");
}

/// The live Shake tombstones and People Nearby clear marks.
fn tombstones(server: &RedisServer) -> u64 {
    ["vc:s:{shake}:x:*", "vc:x:*"]
        .iter()
        .map(|pattern| {
            let keys = server.cli(&["--raw", "keys", pattern]).expect("keys");
            keys.lines().filter(|k| !k.is_empty()).count() as u64
        })
        .sum()
}

/// Shakes as `user` at `at`; whether a partner was found.
async fn shake(app: &TestApp, user: &str, at: crate::places::Point) -> bool {
    let request = pb::ShakeRequest {
        user_id: user.to_owned(),
        location: Some(crate::calls::location(at)),
    };
    let reply = app.client.shake().shake(request).await.expect("shake");
    matches!(
        reply.into_inner().result,
        Some(pb::shake_response::Result::Match(_))
    )
}

/// Whether any key of the store names `user` or holds a member or field naming them.
fn holds_user(server: &RedisServer, user: &str) -> bool {
    let script = "#!lua flags=allow-cross-slot-keys,no-writes
for _, k in ipairs(redis.call('KEYS', '*')) do
  if string.find(k, ARGV[1], 1, true) then return 1 end
  local t = redis.call('TYPE', k).ok
  local items = {}
  if t == 'zset' then items = redis.call('ZRANGE', k, 0, -1)
  elseif t == 'hash' then items = redis.call('HKEYS', k)
  elseif t == 'list' then items = redis.call('LRANGE', k, 0, -1) end
  for _, x in ipairs(items) do
    if string.find(x, ARGV[1], 1, true) then return 1 end
  end
end
return 0";
    server.cli(&["eval", script, "0", user]).expect("eval") == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_leave_nothing_physically_in_redis_within_five_seconds() {
    let locations = RedisServer::start().expect("redis");
    let consents = RedisServer::start().expect("redis");
    fill(&locations, 100_000).await;
    let baseline = locations.dbsize().expect("dbsize");
    let store = redis_store(
        Target::single(locations.url()),
        Target::single(consents.url()),
    );
    let app = spawn_app_with(|c| {
        c.retention = retention(Duration::from_secs(3));
        c.sweep_interval = Duration::from_millis(200);
        c.store = store;
    })
    .await;
    let (mut last_purge, expire_purge) = update_four_users(&app).await;
    purge_three_users_and_hold_the_fourth(&app, &locations, expire_purge).await;
    // Shake too: a pairing leaves history for both users, purged by its deadline.
    last_purge = last_purge.max(pair_two_shakers(&app, &locations, baseline).await);

    let physical = wait_until_only_the_baseline_is_held(&locations, baseline, last_purge).await;
    assert_nothing_of_the_users_remains(&locations, &consents, physical);
}

/// Joins and updates four users near HOME: the latest `purge_at` among them and the last one's.
async fn update_four_users(app: &TestApp) -> (i64, i64) {
    let users = ["p-clear", "p-withdraw", "p-forget", "p-expire"];
    let (mut last_purge, mut expire_purge) = (0, 0);
    for (user, at) in users.iter().zip(crowd(HOME, users.len(), 300.0)) {
        app.join(user, at, Gender::Female).await;
        let reply = app.update(user, at, Gender::Female).await.expect("update");
        last_purge = last_purge.max(millis(reply.purge_at.as_ref()));
        expire_purge = millis(reply.purge_at.as_ref());
    }
    (last_purge, expire_purge)
}

/// Clears, withdraws and forgets three users, gone from Redis at once; the fourth is held
/// until its deadline (`expire_purge`).
async fn purge_three_users_and_hold_the_fourth(
    app: &TestApp,
    locations: &RedisServer,
    expire_purge: i64,
) {
    let purges = (
        app.clear("p-clear", Feature::Unspecified).await,
        app.withdraw("p-withdraw", Feature::PeopleNearby).await,
        app.forget("p-forget").await,
    );
    let (Ok(_), Ok(_), Ok(_)) = &purges else {
        panic!("a purge was refused: {purges:?}");
    };
    for user in ["p-clear", "p-withdraw", "p-forget"] {
        assert!(!holds_user(locations, user), "{user} is gone at once");
    }
    // Held until its deadline (3 s after its update: checked only while that is ahead, so a
    // machine slowed past it does not fail the test by chance; the sweeper may go then).
    let held = holds_user(locations, "p-expire");
    assert!(
        held || wall_millis() >= expire_purge,
        "the others' deadline has not passed"
    );
}

/// Pairs two shakers, whose history Redis holds until its deadline: that deadline, at the
/// latest.
async fn pair_two_shakers(app: &TestApp, locations: &RedisServer, baseline: u64) -> i64 {
    for user in ["s-a", "s-b"] {
        app.grant(user, Feature::Shake).await.expect("grant");
    }
    let (a, b) = tokio::join!(
        shake(app, "s-a", HOME),
        shake(app, "s-b", HOME.offset_m(100.0, 0.0))
    );
    assert!(a && b, "the two shakers are paired");
    let deadline = wall_millis() + 3_000;
    assert!(
        holds_user(locations, "s-a"),
        "shake history is held until its deadline"
    );
    assert!(locations.dbsize().expect("dbsize") > baseline);
    deadline
}

/// Waits until Redis holds no more than the filler `baseline` and one key, failing once
/// [`PURGE_BOUND`] has passed after `last_purge`: the keys then held.
async fn wait_until_only_the_baseline_is_held(
    locations: &RedisServer,
    baseline: u64,
    last_purge: i64,
) -> u64 {
    reclaim_limit_keys(
        locations,
        &[
            "p-clear",
            "p-withdraw",
            "p-forget",
            "p-expire",
            "s-a",
            "s-b",
        ],
    );
    let mut physical = held_keys(locations);
    while physical > baseline + 1 {
        assert!(
            wall_millis() < last_purge + PURGE_BOUND.as_millis() as i64,
            "{} keys remain: {:?} parts {:?}",
            physical - baseline,
            location_keys(locations),
            locations.cli(&["zrange", "vc:n:parts", "0", "-1", "withscores"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        physical = held_keys(locations);
    }
    physical
}

/// Only the partition index and tombstones remain of the users (`physical` keys, as Redis
/// reports them), and only the forgotten user's consent records are gone.
fn assert_nothing_of_the_users_remains(
    locations: &RedisServer,
    consents: &RedisServer,
    physical: u64,
) {
    let reported = locations.info_keyspace_keys().expect("info");
    assert_eq!(reported - tombstones(locations), physical);
    let remaining = location_keys(locations);
    assert!(
        remaining.iter().all(|k| k == "vc:n:parts"
            || k.starts_with("vc:s:{shake}:x:")
            || k.starts_with("vc:x:")),
        "only the partition index may remain: {remaining:?}"
    );
    assert!(!holds_user(locations, "p-expire"));
    assert!(!holds_user(locations, "s-a") && !holds_user(locations, "s-b"));
    let consent_keys = consents.cli(&["--raw", "keys", "*"]).expect("keys");
    assert!(
        !consent_keys.contains("p-forget"),
        "forget removes consent records too"
    );
    assert!(consent_keys.contains("p-expire") && consent_keys.contains("p-withdraw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_service_processes_on_one_redis_agree() {
    let redis = RedisServer::start().expect("redis");
    let first = spawn_app_with(|c| c.store = stores_on(&redis)).await;
    let secret = std::sync::Arc::new(vicinity::domain::nearby::Secret::from_bytes([5; 32]));
    let shared = secret.clone();
    let first_secret_app = spawn_app_with(|c| {
        c.store = stores_on(&redis);
        c.secret = shared;
    })
    .await;
    let second = spawn_app_with(|c| {
        c.store = stores_on(&redis);
        c.secret = secret;
    })
    .await;
    // The second node's clock runs two hours ahead: expiry is decided by Redis's clock, so
    // it must still see what the others wrote as live.
    second.advance(Duration::from_secs(2 * 3600));
    let spots = crowd(HOME, 3, 200.0);
    first.join("two-a", spots[0], Gender::Male).await;
    first_secret_app
        .join("two-b", spots[1], Gender::Female)
        .await;
    second.join("two-c", spots[2], Gender::Female).await;
    let seen_by_second = second.listed("two-c").await;
    assert_eq!(seen_by_second.len(), 2, "{seen_by_second:?}");
    let seen_by_twin = first_secret_app.listed("two-c").await;
    assert_eq!(
        seen_by_second, seen_by_twin,
        "nodes sharing a secret order alike"
    );
    second
        .clear("two-a", Feature::Unspecified)
        .await
        .expect("clear");
    assert!(!first.listed("two-b").await.contains(&"two-a".to_owned()));
    // Three sweepers run against one Redis meanwhile; none of them may break anything.
    let sweeps = || {
        let metrics = vicinity::telemetry::metrics::get();
        metrics.sweeps.with_label_values(&["ok"]).get()
    };
    let before = sweeps();
    eventually("each node sweeps", || sweeps() >= before + 3).await;
    assert_eq!(second.listed("two-b").await, vec!["two-c".to_owned()]);
}

async fn wait_for_health(app: &TestApp, want: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if app.health("").await.ok() == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "health did not become {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lists from `viewer` with a client deadline; returns the outcome and how long it took.
/// A list with `deadline`: its outcome (an error as its code and `ErrorInfo` reason; a store
/// failure also carries a `RetryInfo`, asserted here) and how long it took.
async fn timed_list(
    app: &TestApp,
    viewer: &str,
    deadline: Duration,
) -> (Result<(), (Code, String)>, Duration) {
    let mut request = Request::new(pb::ListNearbyRequest {
        user_id: viewer.to_owned(),
        ..Default::default()
    });
    request.set_timeout(deadline);
    let started = Instant::now();
    let reply = app.client.nearby().list_nearby(request).await;
    let outcome = reply.map(drop).map_err(|status| {
        let (reason, _) = crate::details::error_info(&status).expect("an ErrorInfo");
        if reason == "STORE_UNAVAILABLE" {
            let retry = status.get_error_details().retry_info().cloned();
            assert!(
                retry.is_some(),
                "STORE_UNAVAILABLE without RetryInfo: {status:?}"
            );
        }
        (status.code(), reason)
    });
    (outcome, started.elapsed())
}

/// How soon readiness must show a real outage: `FAILS_TO_NOT_SERVING` checks, each at most the
/// check interval and the store timeout (1 s here), and some slack.
const NOT_SERVING_WITHIN: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_store_check_does_not_flip_readiness() {
    let mut redis = RedisServer::start().expect("redis");
    let app = spawn_app_with(|c| c.store = stores_on(&redis)).await;
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;

    // Paused for 2.2 s: a check starts within 0.5 s and times out after the store timeout
    // (1 s) inside the pause; the next starts 0.5 s later and is answered once Redis resumes,
    // within its timeout. Exactly one check fails (with one failure enough, this test fails).
    redis.pause().expect("pause");
    let started = Instant::now();
    let mut resumed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if !resumed && started.elapsed() > Duration::from_millis(2_200) {
            redis.resume().expect("resume");
            resumed = true;
        }
        // Health is answered by the server itself, not the store: a paused Redis cannot
        // hold this call up.
        let status = app.health("").await.expect("health");
        assert_eq!(
            status,
            ServingStatus::Serving,
            "flipped after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_or_killed_redis_fails_calls_in_time_and_the_service_recovers_alone() {
    let mut redis = RedisServer::start().expect("redis");
    let app = spawn_app_with(|c| c.store = stores_on(&redis)).await;
    for (user, at) in ["f-a", "f-b"].iter().zip(crowd(HOME, 2, 100.0)) {
        app.join(user, at, Gender::Male).await;
    }
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;

    redis.pause().expect("pause");
    let deadline = Duration::from_secs(2);
    let calls = (0..20).map(|_| timed_list(&app, "f-a", deadline));
    for (outcome, took) in join_all(calls).await {
        let refused = outcome.expect_err("redis is paused");
        let expected = [
            (Code::Unavailable, "STORE_UNAVAILABLE"),
            (Code::DeadlineExceeded, "STORE_TIMEOUT"),
            (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        ];
        assert!(
            expected
                .iter()
                .any(|(c, r)| refused.0 == *c && refused.1 == *r),
            "{refused:?}"
        );
        assert!(took < deadline + Duration::from_millis(500), "{took:?}");
    }
    wait_for_health(&app, ServingStatus::NotServing, NOT_SERVING_WITHIN).await;
    redis.resume().expect("resume");
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;
    assert_eq!(timed_list(&app, "f-a", deadline).await.0, Ok(()));

    redis.kill().expect("kill");
    let (outcome, took) = timed_list(&app, "f-a", deadline).await;
    assert_eq!(
        outcome,
        Err((Code::Unavailable, "STORE_UNAVAILABLE".to_owned()))
    );
    assert!(took < deadline, "{took:?}");
    wait_for_health(&app, ServingStatus::NotServing, NOT_SERVING_WITHIN).await;
    redis.restart().expect("restart");
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;
    // Nothing persisted, so the user starts over; the point is that calls work again.
    app.join("f-a", HOME, Gender::Male).await;
    assert_eq!(timed_list(&app, "f-a", deadline).await.0, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisting_location_store_is_refused_at_start_up() {
    let persisting = RedisServer::start_with(&["--appendonly", "yes"]).expect("redis");
    let outcome = start_on(stores_on(&persisting)).await;
    assert!(
        matches!(outcome, Err(ServerError::PersistentLocationStore(_))),
        "{outcome:?}"
    );
}

/// What starting a server on these stores gives.
async fn start_on(store: StoreConfig) -> Result<(), ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config: Config = test_config(addr, manual_clock());
    config.store = store;
    server::run(config, listener, std::future::pending()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_may_evict_keys_is_refused_at_start_up() {
    let fine = RedisServer::start().expect("redis");
    let evicting = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).expect("redis");
    let volatile = RedisServer::start_with(&["--maxmemory-policy", "volatile-ttl"]).expect("redis");
    // A location store evicting anything, even only keys with a TTL (every location key has one).
    for location in [&evicting, &volatile] {
        let outcome = start_on(redis_store(target_of(location), target_of(&fine))).await;
        assert!(
            matches!(
                &outcome,
                Err(ServerError::EvictingStore {
                    store: "location",
                    ..
                })
            ),
            "{outcome:?}"
        );
        let message = outcome.expect_err("refused").to_string();
        assert!(message.contains("maxmemory-policy"), "{message}");
    }
    // A consent store that may evict consent records or owed purges.
    let outcome = start_on(redis_store(target_of(&fine), target_of(&evicting))).await;
    assert!(
        matches!(&outcome, Err(ServerError::EvictingStore { store: "consent", policy, .. }) if policy == "allkeys-lru"),
        "{outcome:?}"
    );
}

/// A store node's settings changed after start (`CONFIG SET`) show in
/// `vicinity_store_unsafe_settings` at the next check, and go when they are set back.
/// Meanwhile, on a location store node, UpdateLocation and Shake are refused as UNAVAILABLE and
/// write nothing, while lists, Leave, Clear and readiness go on; both resume once the settings
/// are safe again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_writes_stop_while_the_location_store_is_unsafe_and_resume_after() {
    let redis = RedisServer::start().expect("redis");
    let app = spawn_app_with(|config| {
        config.store = stores_on(&redis);
        config.settings_check_interval = Duration::from_millis(50);
    })
    .await;
    let nodes = |setting: &str| {
        let gauge = &vicinity::telemetry::metrics::get().store_unsafe_settings;
        gauge.with_label_values(&["locations", setting]).get()
    };
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    app.join("viewer", HOME, Gender::Male).await;
    app.await_serving("").await.expect("serving");
    for (name, bad, good, setting) in [
        ("maxmemory-policy", "allkeys-lru", "noeviction", "eviction"),
        ("appendonly", "yes", "no", "persistence"),
    ] {
        let (stays, newcomer) = (format!("stays-{setting}"), format!("new-{setting}"));
        app.join(&stays, HOME, Gender::Female).await;
        app.grant(&newcomer, Feature::PeopleNearby)
            .await
            .expect("grant");
        app.grant(&newcomer, Feature::Shake).await.expect("grant");
        assert_eq!(nodes(setting), 0, "{setting} before");
        let set = |value: &str| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone();
        let () = set(bad).query_async(&mut conn).await.expect("config set");
        // The refusal is set before the gauge counts the node.
        eventually(&format!("{setting} counted"), || nodes(setting) == 1).await;
        let refused = app.update(&newcomer, HOME, Gender::Female).await;
        let code = refused.as_ref().map_err(tonic::Status::code);
        assert_eq!(
            code.err(),
            Some(Code::Unavailable),
            "{setting}: {refused:?}"
        );
        let shake = pb::ShakeRequest {
            user_id: newcomer.clone(),
            location: Some(crate::calls::location(HOME)),
        };
        let refused = app.client.shake().shake(shake).await;
        let code = refused.as_ref().map_err(tonic::Status::code);
        assert_eq!(
            code.err(),
            Some(Code::Unavailable),
            "{setting}: {refused:?}"
        );
        // Refused before any limit was counted or place taken: no key of the newcomer's limits.
        let limits: Vec<String> = redis::cmd("KEYS")
            .arg(format!("vc:l:{{{newcomer}}}*"))
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        assert!(limits.is_empty(), "{setting}: {limits:?}");
        // Lists go on, and show nothing the refused update would have written; so do Leave,
        // Clear and readiness.
        assert_eq!(app.listed("viewer").await, [stays.as_str()], "{setting}");
        app.leave(&stays).await.expect("leave goes on");
        app.clear(&stays, Feature::Unspecified)
            .await
            .expect("clear goes on");
        assert!(app.listed("viewer").await.is_empty(), "{setting}");
        let health = app.health("").await.expect("health");
        assert_eq!(health, ServingStatus::Serving, "{setting}");
        let () = set(good).query_async(&mut conn).await.expect("config set");
        eventually(&format!("{setting} cleared"), || nodes(setting) == 0).await;
        app.update(&newcomer, HOME, Gender::Female)
            .await
            .expect("updates resume");
        assert_eq!(app.listed("viewer").await, [newcomer.as_str()], "{setting}");
        app.clear(&newcomer, Feature::Unspecified)
            .await
            .expect("clear");
    }
}

/// A single-node target on `server`.
fn target_of(server: &RedisServer) -> Target {
    Target::single(server.url())
}

/// Lists in a loop until `stop`, counting successes into `ok`.
async fn keep_busy(
    client: vicinity::client::Client,
    user: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU32>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut request = Request::new(pb::ListNearbyRequest {
            user_id: user.clone(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(2));
        if client.nearby().list_nearby(request).await.is_ok() {
            ok.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_losing_a_master_under_load_recovers_without_a_restart() {
    let mut cluster = RedisCluster::start(3, 1).expect("cluster");
    let target = Target::cluster(cluster.urls());
    let app = spawn_app_with(|c| c.store = redis_store(target.clone(), target.clone())).await;
    let spots = crowd(HOME, 20, 800.0);
    for (i, at) in spots.iter().enumerate() {
        app.join(&format!("cl-{i}"), *at, Gender::Female).await;
    }
    assert_eq!(app.listed("cl-0").await.len(), 19);
    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let load = start_four_listing_clients(&app, &stop, &ok);
    eventually("the load runs", || ok.load(Ordering::Relaxed) >= 8).await;
    kill_the_master_holding_homes_cell(&mut cluster);
    let recovered = wait_until_lists_are_served_again(&app).await;
    cluster
        .wait_for_failover(Duration::from_secs(20))
        .expect("failover");
    // The load kept running through the failover and succeeds again.
    let before = ok.load(Ordering::Relaxed);
    eventually("the load succeeds after the failover", || {
        ok.load(Ordering::Relaxed) > before
    })
    .await;
    let update = app.update("cl-1", spots[1], Gender::Female).await;
    assert!(
        update.is_ok(),
        "writes work after the failover ({recovered:?}): {update:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task ends");
    }
}

/// Four clients of `app` listing in a loop ([`keep_busy`]) until `stop`, counting into `ok`.
fn start_four_listing_clients(
    app: &TestApp,
    stop: &Arc<AtomicBool>,
    ok: &Arc<AtomicU32>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|i| {
            let user = format!("cl-{i}");
            tokio::spawn(keep_busy(
                app.client.clone(),
                user,
                stop.clone(),
                ok.clone(),
            ))
        })
        .collect()
}

/// Kills the master that holds HOME's cell key.
fn kill_the_master_holding_homes_cell(cluster: &mut RedisCluster) {
    let cell_key = vicinity::storage::redis::keys::cell_key(HOME.cell());
    let victim = cluster.master_for_key(&cell_key).expect("owner").port();
    let index = cluster
        .masters()
        .iter()
        .position(|m| m.port() == victim)
        .expect("a master");
    cluster.kill_master(index).expect("kill");
}

/// Lists every 200 ms until a list is served again (at most 30 s): how long that took.
async fn wait_until_lists_are_served_again(app: &TestApp) -> Duration {
    let started = Instant::now();
    let mut recovered = None;
    while started.elapsed() < Duration::from_secs(30) {
        let (outcome, _) = timed_list(app, "cl-0", Duration::from_secs(2)).await;
        if outcome.is_ok() {
            recovered = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    recovered.expect("the service serves again after the failover")
}

/// The HTTP probes on the metrics listener: `/livez` answers 200 all
/// along; `/readyz` follows gRPC readiness, 503 while the store is paused, 200 again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_on_the_metrics_listener_follow_readiness() {
    let mut redis = RedisServer::start().expect("redis");
    let app = spawn_app_with(|c| {
        c.store = stores_on(&redis);
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await;
    let addr = app.metrics_addr().expect("metrics served");
    let status = |path: &'static str| async move {
        let (status, _) = crate::helpers::http_get(addr, path)
            .await
            .expect("an answer");
        status
    };
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;
    assert!(status("/readyz").await.contains(" 200"));
    assert!(status("/livez").await.contains(" 200"));

    redis.pause().expect("pause");
    wait_for_health(&app, ServingStatus::NotServing, NOT_SERVING_WITHIN).await;
    assert!(status("/readyz").await.contains(" 503"));
    assert!(
        status("/livez").await.contains(" 200"),
        "alive while not ready"
    );

    redis.resume().expect("resume");
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;
    assert!(status("/readyz").await.contains(" 200"));
    assert!(status("/elsewhere").await.contains(" 404"));
}

/// A health `Watch` is a call in flight, so its connection, on which no
/// other call starts, is not closed at the idle timeout: the stream still delivers readiness
/// going NOT_SERVING, which takes at least three health checks 500 ms apart (a paused
/// store), several idle timeouts of 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_watch_outlives_the_idle_timeout_of_its_connection() {
    let mut redis = RedisServer::start().expect("redis");
    let app = spawn_app_with(|c| {
        c.store = stores_on(&redis);
        c.connections.idle_timeout = Duration::from_millis(300);
    })
    .await;
    wait_for_health(&app, ServingStatus::Serving, Duration::from_secs(2)).await;
    let watcher = app.connect(None).await;
    let request = tonic_health::pb::HealthCheckRequest::default();
    let mut watch = watcher
        .health()
        .watch(request)
        .await
        .expect("a watch")
        .into_inner();
    let first = watch.message().await.expect("a message").expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);

    redis.pause().expect("pause");
    let next = tokio::time::timeout(Duration::from_secs(20), watch.message()).await;
    let next = next.expect("in time").expect("the stream stayed open");
    assert_eq!(next.expect("a status").status(), ServingStatus::NotServing);
    redis.resume().expect("resume");
}
