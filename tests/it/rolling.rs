//! A rolling deploy, both ways: a node of the previous release (the commit
//! `compat/previous-release` names, built by `scripts/previous-release`) and a node of this
//! build serve one Redis at once. Each lists what the other wrote, each clears what the other
//! wrote, a withdrawal on either purges what the other wrote, and what both wrote is purged
//! physically at its deadline whichever node's sweep finds it (docs/operations.md, "Rolling
//! deploys").

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use tonic::Request;
use vicinity::{
    client::Client,
    grpc::pb::{self, Feature, Gender},
};
use vicinity_testing::redis::RedisServer;

use crate::{
    binary::{Served, free_port},
    calls::{NOTICE, list_request, location},
    checker::location_keys,
    places::{HOME, crowd},
};

/// The store's retention on both nodes: short, so the deadline purges are seen in the test,
/// and long enough for the calls before them (every list needs the viewer's live entry).
const RETENTION: Duration = Duration::from_secs(8);
/// How long after its deadline an entry may still be held (contract §4.2's bound in tests).
const PURGE_BOUND: Duration = Duration::from_secs(5);

/// The previous release's binary, built on first use (minutes) and kept per commit.
fn previous_release() -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(format!("{root}/scripts/previous-release"))
        .output()
        .expect("scripts/previous-release runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "building the previous release failed:\n{stderr}"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// A node: `binary serve` on one Redis with the shared secret, and a client.
struct Node {
    _served: Served,
    client: Client,
}

impl Node {
    async fn start(binary: &std::path::Path, redis: &RedisServer) -> Node {
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis-url", &redis.url()])
            .args(["--order-secret", &"5a".repeat(32)])
            .args(["--retention", &format!("{}s", RETENTION.as_secs())])
            .args(["--sweep-interval", "100ms"])
            .env_remove("VICINITY_REDIS_URL");
        let served = Served::spawn(command, port);
        served.wait_until_serving();
        let client = Client::connect(&served.addr, None).await.expect("connect");
        Node {
            _served: served,
            client,
        }
    }

    async fn join(&self, user: &str, at: crate::places::Point) {
        let grant = pb::GrantConsentRequest {
            user_id: user.to_owned(),
            feature: Feature::PeopleNearby.into(),
            notice_version: NOTICE.to_owned(),
            source: "it/rolling".to_owned(),
        };
        self.client
            .consent()
            .grant_consent(grant)
            .await
            .expect("grant");
        let update = pb::UpdateLocationRequest {
            user_id: user.to_owned(),
            location: Some(location(at)),
            gender: Gender::Female.into(),
        };
        self.client
            .nearby()
            .update_location(update)
            .await
            .expect("update");
    }

    /// Who `viewer` sees on the first page.
    async fn listed(&self, viewer: &str) -> BTreeSet<String> {
        let mut request = Request::new(list_request(viewer));
        request.set_timeout(Duration::from_secs(5));
        let reply = self.client.nearby().list_nearby(request).await;
        let page = reply.expect("list").into_inner();
        page.users.into_iter().map(|u| u.user_id).collect()
    }

    /// Clears `user` from every feature (the request's default feature): the entries purged.
    async fn clear(&self, user: &str) -> u32 {
        let request = pb::ClearLocationRequest {
            user_id: user.to_owned(),
            ..Default::default()
        };
        let reply = self.client.privacy().clear_location(request).await;
        reply.expect("clear").into_inner().purged_entries
    }

    /// Withdraws `user`'s People Nearby consent: the entries purged.
    async fn withdraw(&self, user: &str) -> u32 {
        let request = pb::WithdrawConsentRequest {
            user_id: user.to_owned(),
            feature: Feature::PeopleNearby.into(),
        };
        let reply = self.client.consent().withdraw_consent(request).await;
        reply.expect("withdraw").into_inner().purged_entries
    }
}

/// The keys `redis` holds that hold location data (limit keys hold none).
fn held_location_keys(redis: &RedisServer) -> Vec<String> {
    let (_, names) = location_keys(&[redis]);
    names
        .into_iter()
        .filter(|k| !k.starts_with("vc:l:"))
        .collect()
}

fn set(users: &[&str]) -> BTreeSet<String> {
    users.iter().map(|u| (*u).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_adjacent_releases_serve_one_redis_together_both_ways() {
    let previous = previous_release();
    let current = std::path::Path::new(env!("CARGO_BIN_EXE_vicinity"));
    let redis = RedisServer::start().expect("redis");
    let old = Node::start(&previous, &redis).await;
    let new = Node::start(current, &redis).await;

    // Each release writes; each lists what both wrote.
    assert_each_lists_what_both_wrote(&old, &new).await;

    // Each clears, and each withdrawal purges, what the other wrote.
    assert_each_clears_and_purges_what_the_other_wrote(&old, &new).await;

    // The old release alone purges what both wrote at its deadline (a rollback's last node)...
    drop(new);
    assert_what_is_left_is_purged_at_its_deadline(&redis, "the previous release").await;

    // ...and this build alone does (a deploy's last step).
    let new = Node::start(current, &redis).await;
    let spots = crowd(HOME, 2, 300.0);
    old.join("ro-5", spots[0]).await;
    new.join("rn-5", spots[1]).await;
    drop(old);
    assert_what_is_left_is_purged_at_its_deadline(&redis, "this build").await;
}

/// Four users join through each node; each node lists the other seven to its first user.
async fn assert_each_lists_what_both_wrote(old: &Node, new: &Node) {
    let spots = crowd(HOME, 8, 300.0);
    let (by_old, by_new) = (
        ["ro-1", "ro-2", "ro-3", "ro-4"],
        ["rn-1", "rn-2", "rn-3", "rn-4"],
    );
    for (i, user) in by_old.iter().enumerate() {
        old.join(user, spots[i]).await;
    }
    for (i, user) in by_new.iter().enumerate() {
        new.join(user, spots[4 + i]).await;
    }
    let everyone_but = |viewer: &str| {
        let mut all = set(&by_old);
        all.extend(set(&by_new));
        all.remove(viewer);
        all
    };
    assert_eq!(
        new.listed("rn-1").await,
        everyone_but("rn-1"),
        "this build reads the old records"
    );
    assert_eq!(
        old.listed("ro-1").await,
        everyone_but("ro-1"),
        "the old build reads the new ones"
    );
}

/// Each node clears one user of the other's and withdraws another's consent, purging their
/// entries; both nodes list only the four users left.
async fn assert_each_clears_and_purges_what_the_other_wrote(old: &Node, new: &Node) {
    // Each node, and the prefix of the users the other node wrote.
    for (node, others, name) in [(new, "ro", "this build"), (old, "rn", "the old build")] {
        assert_eq!(
            node.clear(&format!("{others}-2")).await,
            1,
            "{name} clears a record of the other release"
        );
        assert_eq!(
            node.withdraw(&format!("{others}-3")).await,
            1,
            "a withdrawal on {name} purges a record of the other release"
        );
    }
    let left = set(&["ro-1", "ro-4", "rn-1", "rn-4"]);
    for node in [old, new] {
        for viewer in ["ro-1", "rn-1"] {
            let mut expected = left.clone();
            expected.remove(viewer);
            assert_eq!(node.listed(viewer).await, expected);
        }
    }
}

/// `redis` holds entries, and none of them once their deadline and the purge bound have
/// passed, with only `sweeper`'s nodes running.
async fn assert_what_is_left_is_purged_at_its_deadline(redis: &RedisServer, sweeper: &str) {
    assert!(
        !held_location_keys(redis).is_empty(),
        "the entries left are in Redis"
    );
    let bound = Instant::now() + RETENTION + PURGE_BOUND;
    loop {
        let held = held_location_keys(redis);
        if held.is_empty() {
            return;
        }
        assert!(
            Instant::now() < bound,
            "{sweeper} left location data past its deadline: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
