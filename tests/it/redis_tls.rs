//! The stores over TLS (contract §4.6): real `redis-server`s serving
//! `rediss://` with certificates made at run time. The service reaches both stores (and its
//! consent cache's tracked connection) with a CA file; a Redis that requires client
//! certificates refuses a node without one and serves one with it; the binary's flags wire
//! it, and a bad file is refused at start naming its flag.

use std::{path::Path, time::Duration};

use vicinity::{
    config::StoreConfig,
    grpc::pb::{Feature, Gender},
    storage::redis::{self, ClientTlsConfig, RedisConsentStore, Target, TlsCertificates},
};
use vicinity_testing::redis::{RedisCluster, RedisServer, TlsFiles};

use crate::{
    helpers::{TestApp, spawn_app_with},
    places::{HOME, crowd},
    tls::Pki,
};

/// A fresh PKI written to a directory of its own (removed when the test's process ends).
pub fn new_pki(name: &str) -> (Pki, std::path::PathBuf) {
    let pki = Pki::new(name);
    let dir =
        std::env::temp_dir().join(format!("vicinity-redis-tls-{name}-{}", std::process::id()));
    let dir = pki.write(&dir);
    (pki, dir)
}

/// The TLS files of the PKI in `dir`, for a Redis.
fn tls_files(dir: &Path, clients_need_certs: bool) -> TlsFiles {
    TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
        clients_need_certs,
    }
}

/// A Redis serving TLS with the PKI in `dir`.
pub fn tls_redis(dir: &Path, clients_need_certs: bool) -> RedisServer {
    RedisServer::start_tls(tls_files(dir, clients_need_certs)).expect("a TLS redis-server")
}

/// `server`'s `rediss://` URL with `pki`'s CA, and its client certificate when `with_cert`.
fn tls_target(server: &RedisServer, pki: &Pki, with_cert: bool) -> Target {
    let url = server.tls_url().expect("a TLS port");
    Target::single(url).with_tls(TlsCertificates {
        client_tls: with_cert.then(|| ClientTlsConfig {
            client_cert: pki.client.0.as_bytes().to_vec(),
            client_key: pki.client.1.as_bytes().to_vec(),
        }),
        root_cert: Some(pki.ca.as_bytes().to_vec()),
    })
}

/// An app whose location store is `locations` and consent store `consents`, each call bounded
/// by `timeout`, with a consent cache of 1024 entries.
async fn spawn_app_over(locations: Target, consents: Target, timeout: Duration) -> TestApp {
    spawn_app_with(|c| {
        c.store = StoreConfig::Redis {
            locations,
            consents,
            allow_persistent: false,
            timeout,
            consent_cache: 1024,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_reaches_both_stores_and_its_consent_cache_over_tls() {
    let (pki, dir) = new_pki("service");
    let (locations, consents) = (tls_redis(&dir, false), tls_redis(&dir, false));
    let (on_locations, on_consents) = (
        tls_target(&locations, &pki, false),
        tls_target(&consents, &pki, false),
    );
    let app = spawn_app_over(on_locations, on_consents.clone(), Duration::from_secs(1)).await;
    let spots = crowd(HOME, 2, 100.0);
    app.join("tls-a", spots[0], Gender::Female).await;
    app.join("tls-b", spots[1], Gender::Male).await;
    assert_eq!(app.listed("tls-b").await.len(), 1);
    // What was written went over TLS to the servers the URLs name.
    assert!(locations.dbsize().expect("dbsize") > 0);
    assert!(consents.dbsize().expect("dbsize") > 0);
    // The consent cache's own connection (RESP3, tracked) is made over TLS too.
    let store = RedisConsentStore::connect(&on_consents, Duration::from_secs(1), 1024)
        .await
        .expect("the consent store over TLS");
    let cache = store.cache().expect("a cache");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cache.settle().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never tracked over TLS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.is_tracking());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_store_that_requires_client_certificates_serves_only_a_node_with_one() {
    let (pki, dir) = new_pki("mutual");
    let server = tls_redis(&dir, true);
    let without = redis::persistence(&tls_target(&server, &pki, false)).await;
    let refused = without.expect_err("a node without a certificate is refused");
    // The kind of failure start-up does not wait out (retrying cannot fix a certificate).
    assert!(!redis::transient(&refused), "{refused}");
    let with = redis::persistence(&tls_target(&server, &pki, true)).await;
    assert_eq!(with.expect("served with a certificate").len(), 1);
    // A CA that did not sign the server's certificate: the node refuses the server.
    let (foreign, foreign_dir) = new_pki("foreign");
    let wrong_ca =
        Target::single(server.tls_url().expect("a TLS port")).with_tls(TlsCertificates {
            client_tls: None,
            root_cert: Some(foreign.ca.as_bytes().to_vec()),
        });
    let refused = redis::persistence(&wrong_ca)
        .await
        .expect_err("the server is refused");
    assert!(!redis::transient(&refused), "{refused}");
    // A server that is not up yet is what start-up waits for.
    let mut down = RedisServer::start().expect("redis");
    down.kill().expect("stop it");
    let not_yet = redis::persistence(&Target::single(down.url())).await;
    assert!(redis::transient(&not_yet.expect_err("nothing listens")));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&foreign_dir);
}

/// The location store on a Redis Cluster reached over TLS only (its nodes'
/// TLS ports, the cluster client given the CA; the cluster tells a TLS client its nodes' TLS
/// ports). Users are listed, and a Clear of each leaves no cell key on any master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_location_store_reaches_a_redis_cluster_over_tls() {
    let (pki, dir) = new_pki("cluster");
    let cluster = RedisCluster::start_tls(3, 0, tls_files(&dir, false)).expect("a TLS cluster");
    let consents = tls_redis(&dir, false);
    let urls = cluster.tls_urls().expect("every node serves TLS");
    assert!(urls.iter().all(|u| u.starts_with("rediss://")), "{urls:?}");
    let on_cluster = Target::cluster(urls).with_tls(TlsCertificates {
        client_tls: None,
        root_cert: Some(pki.ca.as_bytes().to_vec()),
    });
    let on_consents = tls_target(&consents, &pki, false);
    let app = spawn_app_over(on_cluster, on_consents, Duration::from_secs(2)).await;
    let spots = crowd(HOME, 2, 100.0);
    app.join("tlsc-a", spots[0], Gender::Female).await;
    app.join("tlsc-b", spots[1], Gender::Male).await;
    assert_eq!(app.listed("tlsc-b").await, ["tlsc-a"]);
    let cells = || {
        cluster
            .masters()
            .iter()
            .map(|m| m.cli(&["--raw", "keys", "vc:n:{*}:c:*"]).expect("keys"))
            .flat_map(|keys| keys.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|k| !k.is_empty())
            .collect::<Vec<_>>()
    };
    assert!(!cells().is_empty(), "the members went to the cluster");
    for user in ["tlsc-a", "tlsc-b"] {
        app.clear(user, Feature::PeopleNearby).await.expect("clear");
    }
    assert_eq!(cells(), Vec::<String>::new(), "a cleared member is left");
    let _ = std::fs::remove_dir_all(&dir);
}
