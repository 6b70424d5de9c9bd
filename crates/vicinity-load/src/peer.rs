//! The peers of contract §7: Redis's own GEO index over the same users, in the same Redis, driven
//! by the same driver. `GEOADD` loads the population into one separate key (and one consent
//! key per user beside it); `GEOSEARCH key FROMLONLAT lng lat BYRADIUS r m ASC COUNT 50` is
//! asked from the same viewers as ListNearby, and so is the consent-aware design a careful
//! team would build on it ([`ConsentGeo`]): one script per query, the same search at the
//! smallest radius that fills a page at the workload's density, then an `MGET` of the
//! results' consent keys, keeping only consented users (fail closed).

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
/// The consent key of a peer user is this prefix and the user id (value `1`: granted).
pub const CONSENT_PREFIX: &str = "vicinity-load:c:";
/// How long the peer's consent keys live: they expire by themselves after a run (one key per
/// user is too many to delete in one call).
pub const CONSENT_TTL_S: u64 = 3_600;

/// The consent-aware peer's script: the radius search, then the consent of what it found,
/// in one call. KEYS: the GEO key. ARGV: lng, lat, radius m, count, consent key prefix.
const CONSENT_GEO: &str = r"
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
  'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHDIST')
if #found == 0 then return found end
local keys = {}
for i, f in ipairs(found) do keys[i] = ARGV[5] .. f[1] end
local states = redis.call('MGET', unpack(keys))
local out = {}
for i, f in ipairs(found) do
  if states[i] == '1' then out[#out + 1] = f end
end
return out
";

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

    /// Deletes the peer's key. `UNLINK`, not `DEL`: at a million members, freeing the key in
    /// the call took longer than the connection's response timeout, and the run failed at its
    /// very end; `UNLINK` frees it on a background thread and answers at once.
    pub async fn remove(&self) -> redis::RedisResult<()> {
        self.connection(0).unlink::<_, ()>(GEO_KEY).await
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
        let mut pipe = redis::pipe();
        let add = pipe.cmd("GEOADD").arg(GEO_KEY);
        for index in i * GEOADD_BATCH..end {
            let user = geo.population.user(index);
            add.arg(user.longitude).arg(user.latitude).arg(user.id());
        }
        for index in i * GEOADD_BATCH..end {
            let key = format!("{CONSENT_PREFIX}{}", geo.population.user(index).id());
            pipe.cmd("SET")
                .arg(key)
                .arg("1")
                .arg("EX")
                .arg(CONSENT_TTL_S)
                .ignore();
        }
        let (mut conn, timeout) = (geo.connection(i), geo.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, pipe.query_async::<(i64,)>(&mut conn)).await {
                Ok(Ok(_)) => Outcome::ok("GEOADD"),
                Ok(Err(e)) => Outcome::failed("GEOADD", format!("redis {:?}", e.kind())),
                Err(_) => Outcome::failed("GEOADD", "CLIENT_TIMEOUT"),
            }
        })
    }
}

/// The consent-aware GEO design (contract §7's peer): `GEOSEARCH … BYRADIUS r ASC COUNT 50
/// WITHDIST` from the viewer, then `MGET` of the results' consent keys, in one script.
#[derive(Debug, Clone)]
pub struct ConsentGeo {
    /// The peer.
    pub geo: Geo,
    /// Who asks.
    pub viewers: Viewers,
    /// The salt of the viewer choice (the same as the service's to ask from the same users).
    pub salt: u64,
}

impl ConsentGeo {
    /// The smallest radius, in whole 100 m, whose disc holds a page of the city's users on
    /// average: 200 m at W1's 1M users (625/km²), 600 m at 100k.
    pub fn radius_m(&self) -> u32 {
        page_radius_m(self.geo.population.city)
    }

    /// `redis-geo-consent-200m`.
    pub fn name(&self) -> String {
        format!("redis-geo-consent-{}m", self.radius_m())
    }
}

impl Target for ConsentGeo {
    fn primary(&self) -> &'static str {
        "GEOSEARCH+MGET"
    }

    fn call(&self, i: u64) -> BoxFuture<'static, Outcome> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(CONSENT_GEO));
        let geo = &self.geo;
        let viewer = geo
            .population
            .user(geo.population.viewer(self.viewers, self.salt, i));
        let mut call = SCRIPT.key(GEO_KEY);
        call.arg(viewer.longitude)
            .arg(viewer.latitude)
            .arg(self.radius_m())
            .arg(LIST_LIMIT)
            .arg(CONSENT_PREFIX);
        let (mut conn, timeout) = (geo.connection(i), geo.timeout);
        const RPC: &str = "GEOSEARCH+MGET";
        Box::pin(async move {
            let searched = call.invoke_async::<redis::Value>(&mut conn);
            match tokio::time::timeout(timeout, searched).await {
                Ok(Ok(_)) => Outcome::ok(RPC),
                Ok(Err(e)) => Outcome::failed(RPC, format!("redis {:?}", e.kind())),
                Err(_) => Outcome::failed(RPC, "CLIENT_TIMEOUT"),
            }
        })
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

/// The smallest radius, in whole 100 m, whose disc holds [`LIST_LIMIT`] of `city` users spread
/// uniformly over the W1 box, on average.
pub fn page_radius_m(city: u64) -> u32 {
    let side_km = 2.0 * super::workload::HALF_SIDE_M / 1_000.0;
    let density = city as f64 / (side_km * side_km);
    let r_km = (LIST_LIMIT as f64 / (std::f64::consts::PI * density.max(1e-9))).sqrt();
    ((r_km * 10.0).ceil() as u32).max(1) * 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_peer_searches_the_radius_that_fills_a_page() {
        // contract §7: 0.2 km at W1's 1M users (625/km²); a tenth of the density needs √10 more.
        assert_eq!(page_radius_m(1_000_000), 200);
        assert_eq!(page_radius_m(100_000), 600);
    }
}
