//! Redis memory per active People Nearby user, everything included (cell sets, due indexes,
//! user records, key overheads), beside Redis GEO's own figure for the same users (contract §7:
//! at most 100 bytes). Each side gets a fresh private `redis-server`; the figure is the
//! `INFO memory` `used_memory` delta divided by the number of users.
//!
//! Run: `cargo bench --bench redis_memory -- 100000 1000000` (the counts to measure; default
//! 100000). Users are W1 (contract §6): uniform over a 40 km × 40 km box around (39.9, 116.4),
//! seeded (the load harness's population, seed 1).

use std::{sync::Arc, time::Duration};

use futures_util::future::try_join_all;
use vicinity::{
    domain::{
        Coordinates, Feature, Gender, Retention, SnapGrid, UserId,
        nearby::{Pseudonyms, Secret, Tickets},
    },
    storage::{
        LocationStore, Position,
        redis::{RedisStore, Target},
    },
};
use vicinity_load::workload::Population;
use vicinity_testing::redis::RedisServer;

/// The seed of the population (the load harness's default).
const SEED: u64 = 1;
/// Upserts in flight at once.
const IN_FLIGHT: usize = 512;

/// W1 (contract §6): `n` users of the load harness's seeded population.
fn w1(n: usize) -> Vec<(String, f64, f64)> {
    let population = Population {
        seed: SEED,
        city: n as u64,
        hotspot: 0,
    };
    (0..population.len())
        .map(|i| {
            let user = population.user(i);
            (user.id(), user.latitude, user.longitude)
        })
        .collect()
}

fn used_memory(server: &RedisServer) -> u64 {
    let info = server.cli(&["info", "memory"]).expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

async fn vicinity_bytes(users: &[(String, f64, f64)]) -> f64 {
    let server = RedisServer::start().expect("redis-server");
    let grid = SnapGrid::default();
    let store = RedisStore::connect(
        &Target::single(server.url()),
        grid,
        Tickets::new(&Secret::from_bytes([4; 32])),
        Pseudonyms::new(&Secret::from_bytes([4; 32])),
        Retention::default(),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    let store = Arc::new(store);
    let before = used_memory(&server);
    for chunk in users.chunks(IN_FLIGHT) {
        let writes = chunk.iter().map(|(id, lat, lng)| {
            let coords = Coordinates::new(*lat, *lng).expect("valid");
            let position = Position {
                user_id: UserId::parse(id, "user_id").expect("valid"),
                feature: Feature::PeopleNearby,
                cell: grid.snap(coords),
                gender: Gender::Female,
            };
            store.upsert_now(position, Retention::default())
        });
        try_join_all(writes).await.expect("upsert");
    }
    let keys = server.dbsize().expect("dbsize");
    let bytes = (used_memory(&server) - before) as f64 / users.len() as f64;
    println!("  vicinity: {keys} keys");
    bytes
}

async fn geo_bytes(users: &[(String, f64, f64)]) -> f64 {
    let server = RedisServer::start().expect("redis-server");
    let client = redis::Client::open(server.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let before = used_memory(&server);
    for chunk in users.chunks(10_000) {
        let mut cmd = redis::cmd("GEOADD");
        cmd.arg("geo");
        for (id, lat, lng) in chunk {
            cmd.arg(*lng).arg(*lat).arg(id);
        }
        let _: i64 = cmd.query_async(&mut conn).await.expect("geoadd");
    }
    (used_memory(&server) - before) as f64 / users.len() as f64
}

#[tokio::main]
async fn main() {
    // Test runners list and run every target; this measures only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![100_000]
    } else {
        counts
    };
    println!("| users | vicinity B/user | Redis GEO B/user | ratio |");
    println!("|---|---|---|---|");
    for n in counts {
        let users = w1(n);
        let ours = vicinity_bytes(&users).await;
        let geo = geo_bytes(&users).await;
        println!("| {n} | {ours:.1} | {geo:.1} | {:.2} |", ours / geo);
    }
}
