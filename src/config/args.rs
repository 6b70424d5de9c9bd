//! The flags of `vicinity serve` as clap reads them (each also from `VICINITY_<FLAG>`), and
//! their parsers; [`super::Config::from_args`] checks them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use super::{ReceiptArgs, RedisPassword};
use crate::{
    domain::limits::{JumpCap, Rate},
    storage::redis::RedisUrl,
};

/// GRANTED consent states a node caches for lists by default: one per user of a large
/// deployment's busiest node (16-byte ids in a hash table: about 34 MB at most).
pub const DEFAULT_CONSENT_CACHE: usize = 1 << 20;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 250ms, 3s, 1h)"))
}

/// A listen address: `IP:PORT`, or `HOST:PORT` resolved now (`localhost:50051`), its first
/// IPv4 address preferred.
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("{e} (write IP:PORT or HOST:PORT, e.g. 127.0.0.1:50051)"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

/// The flags of `vicinity serve`, each also read from `VICINITY_<FLAG>`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "VICINITY_LISTEN", default_value = "127.0.0.1:50051", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// How long location data lives after a user's last activity (at most 1h).
    #[arg(long, env = "VICINITY_RETENTION", default_value = "1h", value_parser = duration)]
    pub retention: Duration,
    /// How long a shake waits for a partner.
    #[arg(long, env = "VICINITY_SHAKE_WINDOW", default_value = "3s", value_parser = duration)]
    pub shake_window: Duration,
    /// How often the purge sweep runs at the latest.
    #[arg(long, env = "VICINITY_SWEEP_INTERVAL", default_value = "1s", value_parser = duration)]
    pub sweep_interval: Duration,
    /// H3 resolution positions are snapped to for distances and order (7..=10).
    #[arg(long, env = "VICINITY_SNAP_RESOLUTION", default_value_t = 9)]
    pub snap_resolution: u8,
    /// File of API keys (`NAME SCOPES KEY` per line). None: open, loopback only.
    #[arg(long, env = "VICINITY_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// 64 hex characters: the secret behind in-band order and page tokens. Every node that
    /// shares a store needs the same one. None: random per process, with a warning.
    #[arg(long, env = "VICINITY_ORDER_SECRET", hide_env_values = true)]
    pub order_secret: Option<String>,
    /// Redis for location data (must not persist). None: the embedded in-memory store.
    /// `redis+sentinel://host:port[,host:port...]/NAME` (or `rediss+sentinel://`): the
    /// primary those Redis Sentinels name NAME, followed through failovers.
    #[arg(
        long,
        env = "VICINITY_REDIS_URL",
        conflicts_with = "redis_cluster",
        hide_env_values = true
    )]
    pub redis_url: Option<RedisUrl>,
    /// Redis Cluster nodes for location data, comma-separated.
    #[arg(
        long,
        env = "VICINITY_REDIS_CLUSTER",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster: Vec<RedisUrl>,
    /// Redis for consent records (should persist; a `redis+sentinel://` URL too). Default:
    /// the location store.
    #[arg(long, env = "VICINITY_CONSENT_REDIS_URL", hide_env_values = true)]
    pub consent_redis_url: Option<RedisUrl>,
    /// File holding the stores' Redis password (one line), for URLs that carry none.
    #[arg(
        long,
        env = "VICINITY_REDIS_PASSWORD_FILE",
        conflicts_with = "redis_password"
    )]
    pub redis_password_file: Option<PathBuf>,
    /// The stores' Redis password, for URLs that carry none. Prefer the variable or
    /// --redis-password-file: a flag shows in the process list.
    #[arg(long, env = "VICINITY_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<RedisPassword>,
    /// File holding the password of the stores' Redis Sentinels (one line: their
    /// `requirepass`), for `redis+sentinel://` URLs; the primary's is --redis-password's.
    #[arg(long, env = "VICINITY_REDIS_SENTINEL_PASSWORD_FILE")]
    pub redis_sentinel_password_file: Option<PathBuf>,
    /// CA certificate (PEM) the stores' `rediss://` servers must chain to. None: the system's
    /// trusted roots.
    #[arg(long, env = "VICINITY_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) to present to stores over `rediss://` (for a Redis started with
    /// `--tls-auth-clients yes`). Needs --redis-client-key.
    #[arg(
        long,
        env = "VICINITY_REDIS_CLIENT_CERT",
        requires = "redis_client_key"
    )]
    pub redis_client_cert: Option<PathBuf>,
    /// The Redis client certificate's private key (PEM).
    #[arg(
        long,
        env = "VICINITY_REDIS_CLIENT_KEY",
        requires = "redis_client_cert"
    )]
    pub redis_client_key: Option<PathBuf>,
    /// Replicas of each Redis primary that must hold a purge (a clear, a withdrawal's, an
    /// erasure's), a consent change and every writing step of any call before it counts
    /// (`WAIT`, within half of --store-timeout; fewer: the call fails and a purge stays owed).
    /// 0: acknowledged at once; Redis replicates asynchronously, so a failover can then lose
    /// it. Set it to 1 when the stores have replicas.
    #[arg(long, env = "VICINITY_REDIS_REPLICA_ACKS", default_value_t = 0)]
    pub redis_replica_acks: u32,
    /// Accept a location store that persists to disk (RDB/AOF keep purged data on disk).
    #[arg(long, env = "VICINITY_ALLOW_PERSISTENT_LOCATION_STORE")]
    pub allow_persistent_location_store: bool,
    /// GRANTED consent states cached for what lists show, at most (a single consent Redis,
    /// kept exact by RESP3 tracking; 16 to 34 bytes each; 0 turns the cache off).
    #[arg(long, env = "VICINITY_CONSENT_CACHE_ENTRIES", default_value_t = DEFAULT_CONSENT_CACHE)]
    pub consent_cache_entries: usize,
    /// The longest one store call may take.
    #[arg(long, env = "VICINITY_STORE_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub store_timeout: Duration,
    /// How long start-up keeps retrying a store it cannot reach (with back-off, logging each
    /// attempt) before giving up; 0 gives up at once.
    #[arg(long, env = "VICINITY_STORE_WAIT", default_value = "60s", value_parser = duration)]
    pub store_wait: Duration,
    /// The runtime's worker threads. 0: one per core. Where the node shares a small machine
    /// with its Redis, one fewer than the cores avoids workers waking each other on cores
    /// Redis needs (docs/performance.md, "The service's threads").
    #[arg(long, env = "VICINITY_SERVE_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub threads: u16,
    /// How long shutdown waits for calls in flight.
    #[arg(long, env = "VICINITY_DRAIN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub drain_timeout: Duration,
    /// Log format.
    #[arg(long, env = "VICINITY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Connections served at once at most; a connection past the cap is closed at accept.
    #[arg(long, env = "VICINITY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections from one IP address at once at most; one past it is closed at accept.
    #[arg(
        long,
        env = "VICINITY_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 1_000
    )]
    pub max_connections_per_peer: usize,
    /// Concurrent calls (HTTP/2 streams) per connection at most.
    #[arg(
        long,
        env = "VICINITY_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_streams_per_connection: u32,
    /// HTTP/2 keepalive: a ping after this long without a frame; no answer within 10 s
    /// closes the connection.
    #[arg(long, env = "VICINITY_KEEPALIVE", default_value = "30s", value_parser = duration)]
    pub keepalive: Duration,
    /// A connection on which no call started for this long is closed (at least 35s: every
    /// call ends within 31s).
    #[arg(long, env = "VICINITY_IDLE_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub idle_timeout: Duration,
    /// A connection on which no call started within this long of its accept is closed, so
    /// sockets that never speak cannot hold the connection cap (at least 1s).
    #[arg(long, env = "VICINITY_FIRST_CALL_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub first_call_timeout: Duration,
    /// A connection is asked to close (GOAWAY, calls in flight finish) after this long, so
    /// clients rebalance across nodes.
    #[arg(long, env = "VICINITY_MAX_CONNECTION_AGE", default_value = "30m", value_parser = duration)]
    pub max_connection_age: Duration,
    /// UpdateLocation calls per user, `COUNT/PERIOD` (a burst of COUNT, then evenly spread),
    /// counted in the location store across every node.
    #[arg(long, env = "VICINITY_UPDATE_RATE", default_value = "12/1m", value_parser = rate)]
    pub update_rate: Rate,
    /// Fresh starts per user while the jump cap is on: updates with no live entry to judge a
    /// jump from (after a Clear, a withdrawal, the end of retention, or the first ever).
    #[arg(long, env = "VICINITY_START_RATE", default_value = "6/1h", value_parser = rate)]
    pub start_rate: Rate,
    /// ListNearby calls per user (each page counts).
    #[arg(long, env = "VICINITY_LIST_RATE", default_value = "30/1m", value_parser = rate)]
    pub list_rate: Rate,
    /// Shake calls per user.
    #[arg(long, env = "VICINITY_SHAKE_RATE", default_value = "20/1m", value_parser = rate)]
    pub shake_rate: Rate,
    /// Calls of one API key (all callers, in open mode) per service node: flood protection.
    #[arg(long, env = "VICINITY_KEY_RATE", default_value = "20000/1s", value_parser = rate)]
    pub key_rate: Rate,
    /// Pending shakes of all users one API key calls for, at once (across every node).
    #[arg(long, env = "VICINITY_KEY_PENDING_SHAKES", default_value_t = 1_000)]
    pub key_pending_shakes: u32,
    /// Server certificate chain (PEM): serve gRPC over TLS. Needs --tls-key.
    #[arg(long, env = "VICINITY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "VICINITY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) client certificates must chain to: mutual TLS, every client
    /// proves itself. Needs --tls-cert.
    #[arg(long, env = "VICINITY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve beyond loopback without mutual TLS, because a proxy or mesh sidecar in front
    /// provides it (API keys are still required there).
    #[arg(long, env = "VICINITY_ALLOW_PLAINTEXT_PUBLIC")]
    pub allow_plaintext_public: bool,
    /// Address to serve Prometheus metrics (`GET /metrics`), the probes (`GET /livez`,
    /// `GET /readyz`) and the receipts' key set (`--consent-key-set`) on, plain HTTP. None:
    /// no endpoint.
    #[arg(long, env = "VICINITY_METRICS_LISTEN", value_parser = listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// Export spans over OTLP/gRPC to this collector (e.g. `http://127.0.0.1:4317`). None: off.
    #[arg(long, env = "VICINITY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The per-call span and the RPC metrics (a tower layer around every service); `false`
    /// only to measure what they cost.
    #[arg(long, env = "VICINITY_RPC_TELEMETRY", default_value_t = true, action = clap::ArgAction::Set)]
    pub rpc_telemetry: bool,
    /// Log each call's end at `info`: method, status code, elapsed time, trace id (never a
    /// user id, a position or a key). Part of the per-call telemetry.
    #[arg(long, env = "VICINITY_ACCESS_LOG")]
    pub access_log: bool,
    /// The fastest move accepted between two updates of a user (km/h; moves within 2 km
    /// always pass; 0 turns the cap off).
    #[arg(long, env = "VICINITY_MAX_SPEED_KMH", default_value_t = JumpCap::DEFAULT_KMH)]
    pub max_speed_kmh: u32,
    /// Signed consent receipts.
    #[command(flatten)]
    pub receipts: ReceiptArgs,
    /// A sensitive-place policy (`vicinity places compile`): positions in or near a listed
    /// place are coarsened or not placed (contract §4.8). Reloaded on SIGHUP.
    #[arg(long, env = "VICINITY_PLACES")]
    pub places: Option<PathBuf>,
}

fn rate(text: &str) -> Result<Rate, String> {
    text.parse()
        .map_err(|e: crate::domain::ValidationError| e.reason.to_string())
}
