//! The conformance suite on a private single Redis and on a private 3+3 Redis Cluster.

use std::{sync::Arc, time::Duration};

use super::{RedisConsentStore, RedisStore, Target};
use crate::{
    domain::{Retention, SnapGrid},
    storage::{
        LocationStore, StoreError, StoreErrorKind,
        conformance::{self, Fixture, ProbeFuture},
    },
    testing::redis::{RedisCluster, RedisServer},
};

/// Counts, on one node, every member of a cell set and every user record: what is physically
/// held, including entries past their deadline. (KEYS is fine in a test of a few keys.)
const COUNT_ENTRIES: &str = "#!lua flags=allow-cross-slot-keys,no-writes
local n = 0
for _, k in ipairs(redis.call('KEYS', 'vc:*')) do
  if string.sub(k, 1, 5) == 'vc:n:' and string.find(k, '}:c:', 1, true) then
    n = n + redis.call('ZCARD', k)
  elseif string.sub(k, 1, 5) == 'vc:u:' then
    n = n + redis.call('HLEN', k)
  end
end
return n";

fn count_on(ports: Vec<u16>) -> ProbeFuture {
    Box::pin(async move {
        let mut total = 0;
        for port in ports {
            let url = format!("redis://127.0.0.1:{port}/");
            let fail = |e| super::conn::store_error(e, "counting");
            let client = redis::Client::open(url).map_err(fail)?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(fail)?;
            let n: usize = redis::cmd("EVAL")
                .arg(COUNT_ENTRIES)
                .arg(0)
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            total += n;
        }
        Ok(total)
    })
}

async fn fixture(target: Target, ports: Vec<u16>) -> Result<Fixture, StoreError> {
    let timeout = Duration::from_secs(2);
    let store =
        RedisStore::connect(&target, SnapGrid::default(), Retention::default(), timeout).await?;
    let store = Arc::new(store);
    let consents = Arc::new(RedisConsentStore::connect(&target, timeout).await?);
    let sweeper: Arc<dyn LocationStore> = store.clone();
    tokio::spawn(async move {
        loop {
            let _ = sweeper.purge_expired().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(Fixture {
        locations: store,
        consents,
        advance: Box::new(|by| Box::pin(tokio::time::sleep(by))),
        physical_entries: Box::new(move || count_on(ports.clone())),
        sweep_bound: Duration::from_secs(5),
    })
}

#[tokio::test]
async fn a_single_redis_passes_the_conformance_suite() {
    let server = RedisServer::start().expect("redis-server starts");
    let target = Target::Single(server.url());
    let fx = fixture(target, vec![server.port()])
        .await
        .expect("connects");
    conformance::run(fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_passes_the_conformance_suite() {
    let cluster = RedisCluster::start(3, 1).expect("cluster starts");
    let ports = cluster.masters().iter().map(|m| m.port()).collect();
    let fx = fixture(Target::Cluster(cluster.urls()), ports)
        .await
        .expect("connects");
    conformance::run(fx).await;
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_as_unavailable() {
    let mut server = RedisServer::start().expect("redis-server starts");
    let target = Target::Single(server.url());
    let store = RedisStore::connect(
        &target,
        SnapGrid::default(),
        Retention::default(),
        Duration::from_secs(1),
    )
    .await
    .expect("connects");
    server.kill().expect("kill");
    let started = std::time::Instant::now();
    let error = store.now().await.expect_err("redis is down");
    assert!(matches!(
        error.kind,
        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
    ));
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    server.restart().expect("restart");
    let mut recovered = false;
    for _ in 0..40 {
        if store.now().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the store reconnects by itself");
}
