//! One typed configuration, validated once at start-up. Defaults live in code, the
//! environment (`VICINITY_*`) overrides them and flags override both (clap does the layering);
//! [`Config::from_args`] turns the raw values into checked types. Tests build [`Config`]
//! values directly and never touch the process environment.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio_util::task::TaskTracker;

mod args;
mod files;
mod receipts;
pub use args::{DEFAULT_CONSENT_CACHE, LogFormat, ServeArgs};
pub use files::{RedisPassword, ServerTls};
use files::{redis_password, redis_sentinel_password, redis_tls, server_tls};
pub use receipts::ReceiptArgs;

use crate::{
    domain::{
        Clock, Retention, SnapGrid, SystemClock,
        limits::{JumpCap, Policy},
        nearby::Secret,
    },
    grpc::Auth,
    places::{self, Places},
    storage::redis::Target,
};

/// The abuse limits the flags give.
fn policy(args: &ServeArgs) -> Result<Policy, ConfigError> {
    if args.key_pending_shakes == 0 {
        return Err(ConfigError(
            "--key-pending-shakes: must be at least 1".into(),
        ));
    }
    Ok(Policy {
        updates: args.update_rate,
        lists: args.list_rate,
        shakes: args.shake_rate,
        key_calls: args.key_rate,
        key_pending_shakes: args.key_pending_shakes,
        jump: match args.max_speed_kmh {
            0 => None,
            kmh => Some(JumpCap::from_kmh(kmh).map_err(|e| ConfigError(e.reason))?),
        },
        starts: args.start_rate,
    })
}

/// How many connections and streams the server takes, and how long they may live
/// (contract §4.5 "Connections").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections from one IP address at once.
    pub max_per_peer: usize,
    /// Concurrent calls per connection.
    pub max_streams: u32,
    /// HTTP/2 (and TCP) keepalive interval.
    pub keepalive: Duration,
    /// Closes a connection with no call started for this long.
    pub idle_timeout: Duration,
    /// Closes a connection on which no call started this long after its accept.
    pub first_call_timeout: Duration,
    /// GOAWAY after this long.
    pub max_age: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_per_peer: 1_000,
            max_streams: 100,
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            first_call_timeout: Duration::from_secs(10),
            max_age: Duration::from_secs(1_800),
        }
    }
}

impl ConnectionLimits {
    /// The shortest idle timeout accepted: longer than any call may run.
    pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(35);

    fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        if args.max_connections == 0
            || args.max_connections_per_peer == 0
            || args.max_streams_per_connection == 0
        {
            return Err(ConfigError(
                "--max-connections, --max-connections-per-peer and --max-streams-per-connection: must be at least 1".into(),
            ));
        }
        if args.idle_timeout < Self::MIN_IDLE_TIMEOUT {
            return Err(ConfigError(
                "--idle-timeout: must be at least 35s (longer than any call)".into(),
            ));
        }
        if args.first_call_timeout < Duration::from_secs(1) {
            return Err(ConfigError(
                "--first-call-timeout: must be at least 1s".into(),
            ));
        }
        if args.keepalive < Duration::from_secs(1)
            || args.max_connection_age < Duration::from_secs(60)
        {
            return Err(ConfigError(
                "--keepalive: at least 1s; --max-connection-age: at least 1m".into(),
            ));
        }
        Ok(Self {
            max_connections: args.max_connections,
            max_per_peer: args.max_connections_per_peer,
            max_streams: args.max_streams_per_connection,
            keepalive: args.keepalive,
            idle_timeout: args.idle_timeout,
            first_call_timeout: args.first_call_timeout,
            max_age: args.max_connection_age,
        })
    }
}

/// A configuration error: one line, for the operator.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Where data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded in-memory store (local use and tests).
    Memory,
    /// Redis.
    Redis {
        /// Location data (must not persist).
        locations: Target,
        /// Consent records (should persist).
        consents: Target,
        /// Whether a persisting location store is accepted anyway.
        allow_persistent: bool,
        /// Bound of each store call.
        timeout: Duration,
        /// GRANTED consent states cached for lists, at most (0: no cache).
        consent_cache: usize,
    },
}

/// How often a running server reads its Redis stores' persistence and eviction settings again
/// (a `CONFIG SET` or a failover can change them after the start-up check).
pub const SETTINGS_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// The validated configuration of a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Retention window.
    pub retention: Retention,
    /// Shake window (reserved for Shake).
    pub shake_window: Duration,
    /// Purge sweep interval.
    pub sweep_interval: Duration,
    /// Snapping grid.
    pub grid: SnapGrid,
    /// Who may call.
    pub auth: Auth,
    /// Order and token secret.
    pub secret: Arc<Secret>,
    /// Whether the secret was generated for this process (multi-node setups need a shared one).
    pub secret_is_ephemeral: bool,
    /// Shutdown drain bound.
    pub drain_timeout: Duration,
    /// How long start-up retries an unreachable store.
    pub store_wait: Duration,
    /// How often the Redis stores' persistence and eviction settings are read again after
    /// start ([`SETTINGS_CHECK_INTERVAL`]; tests make it shorter).
    pub settings_check_interval: Duration,
    /// Where data lives.
    pub store: StoreConfig,
    /// Connection and stream limits.
    pub connections: ConnectionLimits,
    /// The abuse limits (rates, the jump cap, pending shakes per key).
    pub policy: Policy,
    /// The clock (tests inject a manual one).
    pub clock: Arc<dyn Clock>,
    /// The service's detached work ([`crate::service::Deps::tasks`]); tests keep a clone to
    /// wait for it.
    pub tasks: TaskTracker,
    /// TLS for gRPC (`None`: plaintext).
    pub tls: Option<ServerTls>,
    /// Whether a non-loopback address may be served without mutual TLS.
    pub allow_plaintext_public: bool,
    /// Where to serve metrics (the binary binds it; tests pass their own listener).
    pub metrics_listen: Option<SocketAddr>,
    /// Whether the per-call span and RPC metrics layer runs.
    pub rpc_telemetry: bool,
    /// Whether each call's end is logged at `info` (`--access-log`).
    pub access_log: bool,
    /// Signs consent receipts (`None`: none).
    pub receipts: Option<Arc<crate::receipts::Receipts>>,
    /// The sensitive-place policy (none by default).
    pub places: Arc<Places>,
}

impl Config {
    /// Validates raw arguments.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let invalid = |e: crate::domain::ValidationError| {
            ConfigError(format!("--{}: {}", e.field.replace('_', "-"), e.reason))
        };
        if args.access_log && !args.rpc_telemetry {
            return Err(ConfigError(
                "--access-log: needs the per-call telemetry (drop --rpc-telemetry false)".into(),
            ));
        }
        let auth = match &args.api_keys {
            Some(path) => {
                Auth::from_file(path).map_err(|e| ConfigError(format!("--api-keys: {e}")))?
            }
            None => Auth::open(),
        };
        let (secret, ephemeral) = match &args.order_secret {
            Some(hex) => (parse_secret(hex)?, false),
            None => (
                random_secret().map_err(|e| ConfigError(format!("--order-secret: {e}")))?,
                true,
            ),
        };
        check_intervals(args)?;
        let retention = Retention::new(args.retention).map_err(invalid)?;
        let grid = SnapGrid::new(args.snap_resolution).map_err(invalid)?;
        Ok(Self {
            listen: args.listen,
            retention,
            shake_window: args.shake_window,
            sweep_interval: args.sweep_interval,
            grid,
            auth,
            secret: Arc::new(secret),
            secret_is_ephemeral: ephemeral,
            drain_timeout: args.drain_timeout,
            store_wait: args.store_wait,
            settings_check_interval: SETTINGS_CHECK_INTERVAL,
            store: store_config(args)?,
            connections: ConnectionLimits::from_args(args)?,
            policy: policy(args)?,
            clock: Arc::new(SystemClock),
            tasks: TaskTracker::new(),
            tls: server_tls(args)?,
            allow_plaintext_public: args.allow_plaintext_public,
            metrics_listen: args.metrics_listen,
            rpc_telemetry: args.rpc_telemetry,
            access_log: args.access_log,
            receipts: args.receipts.signer(retention)?,
            places: Arc::new(place_policy(args.places.as_deref(), grid)?),
        })
    }

    /// A local configuration with defaults: open, on `listen`, with a random secret (the
    /// server refuses to start if the system's randomness failed, see `random::check`; the
    /// secret is then all zeros here and never used).
    pub fn local(listen: SocketAddr) -> Self {
        Self {
            listen,
            retention: Retention::default(),
            shake_window: Duration::from_secs(3),
            sweep_interval: Duration::from_secs(1),
            grid: SnapGrid::default(),
            auth: Auth::open(),
            secret: Arc::new(random_secret().unwrap_or(Secret::from_bytes([0; 32]))),
            secret_is_ephemeral: true,
            drain_timeout: Duration::from_secs(10),
            store_wait: Duration::ZERO,
            settings_check_interval: SETTINGS_CHECK_INTERVAL,
            store: StoreConfig::Memory,
            connections: ConnectionLimits::default(),
            policy: Policy::default(),
            clock: Arc::new(SystemClock),
            tasks: TaskTracker::new(),
            tls: None,
            allow_plaintext_public: false,
            metrics_listen: None,
            rpc_telemetry: true,
            access_log: false,
            receipts: None,
            places: Arc::default(),
        }
    }
}

/// The place policy in `path`, which must be compiled for the grid's resolution.
fn place_policy(path: Option<&std::path::Path>, grid: SnapGrid) -> Result<Places, ConfigError> {
    let Some(path) = path else {
        return Ok(Places::none());
    };
    let policy = places::Policy::load_for(path, grid.resolution())
        .map_err(|e| ConfigError(format!("--places: {e} (--snap-resolution)")))?;
    Ok(Places::from_file(policy, path))
}

/// Refuses a Shake window or a sweep interval out of its range.
fn check_intervals(args: &ServeArgs) -> Result<(), ConfigError> {
    let shake_window = args.shake_window;
    if shake_window.is_zero() || shake_window > Duration::from_secs(30) {
        return Err(ConfigError(
            "--shake-window: must be between 1ms and 30s".into(),
        ));
    }
    if args.sweep_interval.is_zero() || args.sweep_interval > Duration::from_secs(5) {
        return Err(ConfigError(
            "--sweep-interval: must be between 1ms and 5s (purge bound)".into(),
        ));
    }
    Ok(())
}

fn store_config(args: &ServeArgs) -> Result<StoreConfig, ConfigError> {
    let locations = match (&args.redis_url, args.redis_cluster.as_slice()) {
        (None, []) => {
            if args.consent_redis_url.is_some() {
                return Err(ConfigError(
                    "--consent-redis-url needs --redis-url or --redis-cluster".into(),
                ));
            }
            return Ok(StoreConfig::Memory);
        }
        (Some(url), _) => Target::from_url(url.expose()),
        (None, nodes) => Target::cluster(nodes.iter().map(|u| u.expose().to_owned()).collect()),
    };
    if args.store_timeout.is_zero() || args.store_timeout > Duration::from_secs(10) {
        return Err(ConfigError(
            "--store-timeout: must be between 1ms and 10s".into(),
        ));
    }
    let consents = args
        .consent_redis_url
        .as_ref()
        .map_or_else(|| locations.clone(), |url| Target::from_url(url.expose()));
    for (flag, target) in [
        ("--redis-url", &locations),
        ("--consent-redis-url", &consents),
    ] {
        if let Some(problem) = target.url_problem() {
            return Err(ConfigError(format!("{flag}: {problem}")));
        }
    }
    let tls = redis_tls(args, [&locations, &consents])?;
    let (password, sentinels) = (redis_password(args)?, redis_sentinel_password(args)?);
    // What both stores are reached with: the TLS files, the passwords, the replica acks.
    let reach = |target: Target| {
        let target = match &tls {
            Some(tls) => target.with_tls(tls.clone()),
            None => target,
        };
        let target = match &password {
            Some(password) => target.with_password(password),
            None => target,
        };
        let target = match &sentinels {
            Some(password) => target.with_sentinel_password(password),
            None => target,
        };
        target.with_replica_acks(args.redis_replica_acks)
    };
    let (locations, consents) = (reach(locations), reach(consents));
    Ok(StoreConfig::Redis {
        locations,
        consents,
        allow_persistent: args.allow_persistent_location_store,
        timeout: args.store_timeout,
        consent_cache: args.consent_cache_entries,
    })
}

fn parse_secret(hex: &str) -> Result<Secret, ConfigError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex, &mut bytes)
        .map_err(|_| ConfigError("--order-secret: must be 64 hex characters".into()))?;
    Ok(Secret::from_bytes(bytes))
}

fn random_secret() -> Result<Secret, crate::random::RandomnessFailed> {
    crate::random::bytes::<32>().map(Secret::from_bytes)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("vicinity").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(&cli.serve).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        let named = parse(&[
            "--listen",
            "localhost:50052",
            "--metrics-listen",
            "localhost:9100",
        ]);
        let named = named.expect("a host name resolves");
        assert!(named.listen.ip().is_loopback() && named.listen.port() == 50052);
        assert_eq!(named.metrics_listen.map(|a| a.port()), Some(9100));
        assert!(
            parse(&["--listen", "localhost"]).is_err(),
            "a port is needed"
        );
        assert_eq!(config.retention.window(), Duration::from_secs(3600));
        assert_eq!(config.sweep_interval, Duration::from_secs(1));
        assert!(config.auth.is_open() && config.secret_is_ephemeral);
        assert_eq!(config.store, StoreConfig::Memory);
        assert_eq!(config.policy, Policy::default());
    }

    #[test]
    fn limits_come_from_flags_and_zero_speed_turns_the_jump_cap_off() {
        let config = parse(&["--update-rate", "6/30s", "--max-speed-kmh", "0"]).unwrap();
        assert_eq!(config.policy.updates, "6/30s".parse().unwrap());
        assert_eq!(config.policy.jump, None);
        for bad in [
            ["--list-rate", "lots"],
            ["--shake-rate", "0/1m"],
            ["--key-pending-shakes", "0"],
        ] {
            let err = parse(&bad).unwrap_err();
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    /// No secret from a broken source (it used to fall back to zeros).
    #[test]
    fn a_broken_randomness_source_refuses_a_secret_of_its_own() {
        let _broken = crate::random::break_on_this_thread();
        let err = parse(&[]).unwrap_err();
        assert!(
            err.ends_with("--order-secret: the system's randomness source failed"),
            "{err}"
        );
        let given = "ab".repeat(32);
        assert!(
            parse(&["--order-secret", &given]).is_ok(),
            "a given secret needs none"
        );
    }

    /// The location and consent targets of a Redis configuration.
    fn targets(config: Config) -> (Target, Target) {
        match config.store {
            StoreConfig::Redis {
                locations,
                consents,
                ..
            } => (locations, consents),
            other => panic!("redis: {other:?}"),
        }
    }

    #[test]
    fn redis_urls_choose_the_redis_store() {
        let config = parse(&[
            "--redis-url",
            "redis://a/",
            "--consent-redis-url",
            "redis://b/",
        ])
        .unwrap();
        let (locations, consents) = targets(config);
        assert_eq!(locations, Target::single("redis://a/"));
        assert_eq!(consents, Target::single("redis://b/"));
        let config = parse(&["--redis-cluster", "redis://a/,redis://b/"]).unwrap();
        let (locations, consents) = targets(config);
        assert_eq!(
            locations,
            Target::cluster(vec!["redis://a/".into(), "redis://b/".into()])
        );
        assert_eq!(consents, locations);
        assert!(parse(&["--consent-redis-url", "redis://b/"]).is_err());
        let config = parse(&["--redis-url", "redis://a/", "--redis-replica-acks", "1"]).unwrap();
        let (locations, consents) = targets(config);
        let acked = Target::single("redis://a/").with_replica_acks(1);
        assert_eq!((&locations, &consents), (&acked, &acked));
        let sentinel = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/vicinity";
        let config = parse(&["--redis-url", sentinel, "--consent-redis-url", sentinel]).unwrap();
        let (locations, consents) = targets(config);
        assert_eq!(
            (&locations, &consents),
            (&Target::sentinel(sentinel), &Target::sentinel(sentinel))
        );
    }

    #[test]
    fn bad_values_are_refused_with_one_line_naming_the_flag() {
        for (flags, flag) in [
            (&["--retention", "2h"][..], "--retention"),
            (&["--snap-resolution", "12"], "--snap-resolution"),
            (&["--order-secret", "abc"], "--order-secret"),
            (&["--redis-url", "redis+sentinel://h:1"], "--redis-url"),
            (&["--api-keys", "/nonexistent/keys"], "--api-keys"),
            (&["--sweep-interval", "0s"], "--sweep-interval"),
        ] {
            let err = parse(flags).unwrap_err();
            assert!(err.contains(flag) && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn a_place_policy_must_be_readable_and_compiled_for_the_grid() {
        use h3o::{LatLng, Resolution};
        let cell = LatLng::new(39.9, 116.4).unwrap().to_cell(Resolution::Nine);
        let text = crate::places::compile::render(
            &[(cell, crate::places::Category::Worship)],
            Resolution::Nine,
            Resolution::Seven,
            &[],
        );
        let path = std::env::temp_dir().join(format!("vicinity-places-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let file = path.to_str().unwrap();
        assert!(parse(&["--places", file]).is_ok());
        let other = parse(&["--places", file, "--snap-resolution", "8"]).unwrap_err();
        assert!(
            other.contains("--places") && other.contains("compiled for resolution 9"),
            "{other}"
        );
        std::fs::remove_file(&path).unwrap();
        let missing = parse(&["--places", file]).unwrap_err();
        assert!(
            missing.contains("--places") && !missing.contains('\n'),
            "{missing}"
        );
    }

    #[test]
    fn a_receipt_key_needs_the_terms_records_name_and_a_readable_key() {
        assert!(parse(&[]).unwrap().receipts.is_none(), "off by default");
        let terms = [
            "--consent-controller",
            "Example Ltd",
            "--consent-contact",
            "dpo@example.com",
            "--consent-storage-location",
            "EU",
            "--consent-jurisdiction",
            "IE",
        ];
        let missing = parse(&["--consent-signing-key", "/nonexistent/key.pem"]).unwrap_err();
        assert!(missing.contains("--consent-controller"), "{missing}");
        let mut flags = vec!["--consent-signing-key", "/nonexistent/key.pem"];
        flags.extend(terms);
        let unreadable = parse(&flags).unwrap_err();
        assert!(
            unreadable.contains("--consent-signing-key /nonexistent/key.pem: cannot be read"),
            "{unreadable}"
        );
        let terms_alone = parse(&terms).unwrap_err();
        assert!(
            terms_alone.contains("--consent-signing-key"),
            "{terms_alone}"
        );
    }
}
