//! The stores behind Redis Sentinel (contract §4.6): a primary, its replica and three
//! sentinels, real processes. The service is given only the sentinels' URL; it serves, and
//! when the primary is killed it follows the failover to the promoted replica without a
//! restart, its purges still physical there.

use std::time::{Duration, Instant};

use tonic::Request;
use vicinity::{
    grpc::pb::{self, Feature, Gender},
    storage::redis::Target,
};
use vicinity_testing::sentinel::RedisSentinels;

use crate::{
    calls::list_request,
    checker::location_keys,
    helpers::{TestApp, spawn_app_with},
    places::{HOME, crowd},
    redis_backend::redis_store,
};

/// How long the service may take to serve again once the sentinels have promoted a replica.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_behind_sentinel_follows_a_failover_without_a_restart() {
    let mut set = RedisSentinels::start().expect("a primary, a replica and three sentinels");
    let target = Target::sentinel(set.url());
    let app = spawn_app_with(|c| c.store = redis_store(target.clone(), target)).await;
    let spots = crowd(HOME, 5, 300.0);
    let users: Vec<String> = (0..spots.len()).map(|i| format!("st-{i}")).collect();
    for (user, at) in users.iter().zip(&spots) {
        app.join(user, *at, Gender::Female).await;
    }
    let before = app.listed("st-0").await;
    assert_eq!(before.len(), 4, "{before:?}");

    set.wait_for_replica()
        .expect("the replica holds every write");
    let old = set.kill_primary().expect("the primary killed");
    set.wait_for_failover(old, Duration::from_secs(30))
        .expect("the sentinels promote the replica");

    // The first calls after the failover may fail (the connection to the dead primary is
    // found broken, and the sentinels are asked again); the service then serves again.
    let listed = list_once_served_again(&app, "st-0").await;
    let after: Vec<String> = listed.users.into_iter().map(|u| u.user_id).collect();
    assert_eq!(
        after, before,
        "what was replicated before the failover is served"
    );

    // Writes reach the promoted primary, and a Clear is physical there.
    app.update("st-1", spots[0], Gender::Female)
        .await
        .expect("an update after the failover");
    for user in &users {
        app.clear(user, Feature::Unspecified).await.expect("clear");
    }
    let primary = set.primary().expect("the new primary");
    let (_, names) = location_keys(&[primary]);
    let held: Vec<&String> = names.iter().filter(|k| !k.starts_with("vc:l:")).collect();
    assert!(
        held.is_empty(),
        "location data left after the Clears: {held:?}"
    );
}

/// The first page `viewer` is served once the service serves again, within
/// [`RECOVERY_BOUND`].
async fn list_once_served_again(app: &TestApp, viewer: &str) -> pb::ListNearbyResponse {
    let started = Instant::now();
    loop {
        let mut request = Request::new(list_request(viewer));
        request.set_timeout(Duration::from_secs(2));
        if let Ok(page) = app.client.nearby().list_nearby(request).await {
            return page.into_inner();
        }
        assert!(
            started.elapsed() < RECOVERY_BOUND,
            "no list served after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
