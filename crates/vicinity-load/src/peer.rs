//! The peer of SPEC §7: Redis's own GEO index over the same users, in the same Redis, driven
//! by the same driver. `GEOADD` loads the population into one separate key; `GEOSEARCH key
//! FROMLONLAT lng lat BYRADIUS r m ASC COUNT 50` is asked from the same viewers as ListNearby.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use redis::{AsyncCommands, aio::MultiplexedConnection};

use super::{
    driver::Target,
    record::Outcome,
    service::LIST_LIMIT,
    workload::{Population, Viewers},
};

/// The key the peer's index lives in (the service's keys all start with `vc:`).
pub const GEO_KEY: &str = "vicinity-load:geo";
/// Members per GEOADD while loading.
pub const GEOADD_BATCH: u64 = 1_000;

/// Connections to the peer Redis and the population it holds.
#[derive(Clone)]
pub struct Geo {
    connections: Arc<[MultiplexedConnection]>,
    population: Population,
    timeout: Duration,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("connections", &self.connections.len())
            .field("population", &self.population)
            .finish()
    }
}

impl Geo {
    /// Opens `connections` multiplexed connections to `url`.
    pub async fn connect(
        url: &str,
        connections: usize,
        population: Population,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let mut all = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            all.push(client.get_multiplexed_async_connection().await?);
        }
        Ok(Geo {
            connections: all.into(),
            population,
            timeout,
        })
    }

    fn connection(&self, i: u64) -> MultiplexedConnection {
        self.connections[(i % self.connections.len() as u64) as usize].clone()
    }

    /// How many GEOADD batches load the population.
    pub fn batches(&self) -> u64 {
        self.population.len().div_ceil(GEOADD_BATCH)
    }

    /// Deletes the peer's key.
    pub async fn remove(&self) -> redis::RedisResult<()> {
        self.connection(0).del::<_, ()>(GEO_KEY).await
    }

    /// Members in the peer's key.
    pub async fn members(&self) -> redis::RedisResult<u64> {
        self.connection(0).zcard(GEO_KEY).await
    }
}

async fn labelled<T: redis::FromRedisValue>(
    rpc: &'static str,
    timeout: Duration,
    cmd: redis::Cmd,
    mut conn: MultiplexedConnection,
) -> Outcome {
    match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
        Ok(Ok(_)) => Outcome::ok(rpc),
        Ok(Err(e)) => Outcome::failed(rpc, format!("redis {:?}", e.kind())),
        Err(_) => Outcome::failed(rpc, "CLIENT_TIMEOUT"),
    }
}

/// Loads batch `i` of the population with one GEOADD.
#[derive(Debug, Clone)]
pub struct GeoAdd(pub Geo);

impl Target for GeoAdd {
    fn primary(&self) -> &'static str {
        "GEOADD"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        let geo = &self.0;
        let end = ((i + 1) * GEOADD_BATCH).min(geo.population.len());
        let mut cmd = redis::cmd("GEOADD");
        cmd.arg(GEO_KEY);
        for index in i * GEOADD_BATCH..end {
            let user = geo.population.user(index);
            cmd.arg(user.longitude).arg(user.latitude).arg(user.id());
        }
        let (conn, timeout) = (geo.connection(i), geo.timeout);
        Box::pin(labelled::<i64>("GEOADD", timeout, cmd, conn))
    }
}

/// `GEOSEARCH key FROMLONLAT lng lat BYRADIUS radius m ASC COUNT 50` from the position of the
/// viewer ListNearby would use for the same request number and salt.
#[derive(Debug, Clone)]
pub struct GeoSearch {
    /// The peer.
    pub geo: Geo,
    /// The search radius in metres.
    pub radius_m: u32,
    /// Who asks.
    pub viewers: Viewers,
    /// The salt of the viewer choice (the same as the service's to ask from the same users).
    pub salt: u64,
}

impl GeoSearch {
    /// `redis-geo-1km`, `redis-geo-500m`.
    pub fn name(&self) -> String {
        match self.radius_m {
            r if r % 1000 == 0 => format!("redis-geo-{}km", r / 1000),
            r => format!("redis-geo-{r}m"),
        }
    }
}

impl Target for GeoSearch {
    fn primary(&self) -> &'static str {
        "GEOSEARCH"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        let geo = &self.geo;
        let viewer = geo
            .population
            .user(geo.population.viewer(self.viewers, self.salt, i));
        let mut cmd = redis::cmd("GEOSEARCH");
        cmd.arg(GEO_KEY)
            .arg("FROMLONLAT")
            .arg(viewer.longitude)
            .arg(viewer.latitude)
            .arg("BYRADIUS")
            .arg(self.radius_m)
            .arg("m")
            .arg("ASC")
            .arg("COUNT")
            .arg(LIST_LIMIT);
        let (conn, timeout) = (geo.connection(i), geo.timeout);
        // Decoded as a raw reply: no per-member string conversion on the harness side.
        Box::pin(labelled::<redis::Value>("GEOSEARCH", timeout, cmd, conn))
    }
}
