//! `spawn_app()`: a real server on 127.0.0.1:0 with a manual clock, and a real tonic client
//! connected to it over TCP. Dropping the app shuts the server down and checks that no
//! location reached the log (see `capture`).
//!
//! # Backends
//!
//! [`Backend::Memory`] is the embedded store; [`Backend::Redis`] starts a private
//! `redis-server` (no persistence, a free port) owned by the app and killed after the server
//! stops. [`on_both_backends!`] turns an `async fn name(backend: Backend)` into the tests
//! `name::on_memory` and `name::on_redis`, so `cargo nextest run --test it on_redis` runs every
//! test on Redis.
//!
//! Time differs between the two. The memory store reads the app's [`ManualClock`]; the Redis
//! store reads the Redis server's `TIME` (for `last_active`, `purge_at`, expiry and the in-band
//! order epoch), which no test can move. The service clock (the manual clock on both) still
//! stamps consent events and judges whether a page token's epoch is too old. So:
//!
//! - On both backends: `auth`, `consent`, `errors`, `leaks` (the TRACE capture), `nearby`
//!   (except the epoch reorder below), `pagination` and `privacy`. Where they check a time the
//!   store sets, they bracket it with [`TestApp::store_now_millis`] read before and after the
//!   call (equal on memory, a few milliseconds apart on Redis). Tests comparing the order of
//!   two separate queries first step clear of an epoch change
//!   ([`TestApp::keep_one_order_epoch_for`]), which real time could bring on Redis.
//! - Memory only, because they move the store's time with [`TestApp::advance`]: `retention`
//!   (one-minute retention, deadlines hit to the millisecond) and
//!   `nearby::new_order_epochs_reorder_the_band` (15-minute epochs). `retention::on_redis`
//!   replays the retention rules on Redis with a 2 s retention and real, bounded sleeps (and
//!   the Redis store's whole-second member deadlines, see there); the epoch reorder has no Redis
//!   variant (it would wait up to 15 minutes).
//! - Redis only: `redis_backend` (purges proven with `DBSIZE`, two nodes on one Redis, faults,
//!   the persistence check, a Cluster failover) and `leaks::*_on_redis` (Redis error replies
//!   in the log). `binary` and `server` test the process and the server shell, not the store:
//!   memory only.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use vicinity::{
    client::Client,
    config::{Config, StoreConfig},
    domain::{ManualClock, Retention, Timestamp, limits::Policy, nearby::OrderContext},
    grpc::pb::Gender,
    server::{self, ServerError},
    storage::redis::Target,
};
use vicinity_testing::redis::RedisServer;

use crate::{capture, places::HOME};

/// How far a store may round a deadline down: the Redis store keeps whole seconds.
pub const ROUNDING_MS: i64 = 1_000;

/// Where every test clock starts: a realistic time (late 2026), not the epoch.
pub const START_MILLIS: i64 = 1_790_000_000_000;
/// The purge sweep interval of test servers on the embedded store.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// The purge sweep interval of test servers on Redis (each sweep is a few round trips).
pub const REDIS_SWEEP_INTERVAL: Duration = Duration::from_millis(200);
/// The bound of each Redis call in test servers.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long shutdown may drain calls in test servers.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one in-band order lasts (the domain's `ORDER_EPOCH`, which is private; checked
/// against `OrderContext::epoch_at` where it is used).
const ORDER_EPOCH_MILLIS: i64 = 15 * 60 * 1_000;

/// The store behind a test server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// The embedded in-memory store (what `server::run` uses without a Redis URL).
    #[default]
    Memory,
    /// A private `redis-server` for locations and consents alike, started with the app.
    Redis,
}

/// Generates, for each `async fn name(backend: Backend)` named, a module `name` with the
/// tests `on_memory` and `on_redis` that run it on each backend.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_memory() {
                super::$name($crate::helpers::Backend::Memory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_redis() {
                super::$name($crate::helpers::Backend::Redis).await;
            }
        }
    )+};
}
pub(crate) use on_both_backends;

impl Backend {
    /// Starts what the backend needs and points `config` at it; returns the Redis server the
    /// app must own (and stop after the server).
    fn start(self, config: &mut Config) -> Option<RedisServer> {
        match self {
            Backend::Memory => None,
            Backend::Redis => {
                let redis = RedisServer::start().expect("start a private redis-server");
                let target = Target::single(redis.url());
                config.store = StoreConfig::Redis {
                    locations: target.clone(),
                    consents: target,
                    allow_persistent: false,
                    timeout: REDIS_TIMEOUT,
                    consent_cache: vicinity::config::DEFAULT_CONSENT_CACHE,
                };
                config.sweep_interval = REDIS_SWEEP_INTERVAL;
                Some(redis)
            }
        }
    }
}

/// A running server and a client connected to it.
pub struct TestApp {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// A client without an API key.
    pub client: Client,
    /// The server's clock: advance it instead of sleeping (on Redis it moves consent
    /// timestamps only; see the module docs).
    pub clock: Arc<ManualClock>,
    /// The retention the server was configured with.
    pub retention: Duration,
    /// The store the server runs on.
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServerError>>>,
    log_start: usize,
    /// Declared last: dropped (killed) after `Drop::drop` has stopped the server.
    redis: Option<RedisServer>,
    /// Where metrics are served, if they are.
    metrics_addr: Option<SocketAddr>,
    /// The server's detached work ([`TestApp::settled`]).
    tasks: tokio_util::task::TaskTracker,
}

/// Waits until `happened` (polled every 10 ms) says `what` happened. Panics after 30 s.
pub async fn eventually(what: &str, mut happened: impl FnMut() -> bool) {
    let bound = std::time::Instant::now() + Duration::from_secs(30);
    while !happened() {
        assert!(std::time::Instant::now() < bound, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until this process's servers hold `n` shakes pending (`vicinity_shakes_waiting`):
/// a shake is pending, and visible to any other shaker, from the moment it counts. Panics
/// after 10 s.
pub async fn shakes_waiting(n: i64) {
    let waiting = &vicinity::telemetry::metrics::get().shakes_waiting;
    let bound = std::time::Instant::now() + Duration::from_secs(10);
    while waiting.get() < n {
        assert!(
            std::time::Instant::now() < bound,
            "{} shakes pending after 10 s, not {n}",
            waiting.get()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A server with the test defaults: open on loopback, embedded store, manual clock.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server with the test defaults, adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn(Backend::default(), configure).await
}

/// A server with the test defaults on `backend`.
pub async fn spawn_app_on(backend: Backend) -> TestApp {
    TestApp::spawn(backend, |_| {}).await
}

/// A server on `backend` where alice (woman, at `HOME`) and bob (man, 40 m east) have joined
/// People Nearby.
pub async fn alice_beside_bob(backend: Backend) -> TestApp {
    let app = spawn_app_on(backend).await;
    app.join("alice", HOME, Gender::Female).await;
    app.join("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await;
    app
}

/// The test defaults for a server on `addr`.
pub fn test_config(addr: SocketAddr, clock: Arc<ManualClock>) -> Config {
    let mut config = Config::local(addr);
    config.clock = clock;
    config.sweep_interval = SWEEP_INTERVAL;
    config.drain_timeout = DRAIN_TIMEOUT;
    // Most tests drive a few users hard; the limits' own tests (`limits`) set what they test.
    config.policy = Policy::unlimited();
    config
}

/// A manual clock at [`START_MILLIS`].
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_millis(START_MILLIS)))
}

impl TestApp {
    /// Starts a server on `backend` and connects a client.
    pub async fn spawn(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        capture::install();
        let log_start = capture::log_len();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let clock = manual_clock();
        let mut config = test_config(addr, clock.clone());
        let redis = backend.start(&mut config);
        configure(&mut config);
        let plaintext = config.tls.is_none();
        let retention = config.retention.window();
        let tasks = config.tasks.clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let metrics = match config.metrics_listen {
            Some(at) => Some(TcpListener::bind(at).await.expect("bind metrics")),
            None => None,
        };
        let metrics_addr = metrics.as_ref().map(|m| m.local_addr().expect("address"));
        let listeners = server::Listeners {
            grpc: listener,
            metrics,
        };
        let server = tokio::spawn(server::run(config, listeners, async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        let client = Client::connect(&format!("http://{addr}"), None)
            .await
            .expect("connect to the test server");
        let app = TestApp {
            addr,
            client,
            clock,
            retention,
            backend,
            shutdown: Some(shutdown),
            server: Some(server),
            log_start,
            redis,
            metrics_addr,
            tasks,
        };
        if plaintext {
            app.wait_until_ready().await;
        }
        app
    }

    /// Waits until the server's first store check has made it ready (it reports NOT_SERVING
    /// until then); a server that stopped or never gets ready is left to the test to report.
    async fn wait_until_ready(&self) {
        let _ = self.await_serving("").await;
    }

    /// Waits until the server's detached work is done: calls' handlers, writes and purges
    /// whose callers were cut off, withdrawals of abandoned shakes, places given back
    /// (`service::Deps::tasks`). Panics if it is not done within `within`.
    pub async fn settled_within(&self, within: Duration) {
        self.tasks.close();
        let done = tokio::time::timeout(within, self.tasks.wait()).await;
        self.tasks.reopen();
        assert!(
            done.is_ok(),
            "{} tasks of the server still running after {within:?}",
            self.tasks.len()
        );
    }

    /// [`TestApp::settled_within`] 30 s: work that takes longer is stuck.
    pub async fn settled(&self) {
        self.settled_within(Duration::from_secs(30)).await;
    }

    /// Where the app serves metrics (`None`: it does not).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `GET /metrics` of an app started with `metrics_listen`: the body.
    pub async fn scrape(&self) -> String {
        let addr = self.metrics_addr.expect("the app serves metrics");
        let (status, body) = http_get(addr, "/metrics").await.expect("an HTTP answer");
        assert!(status.contains(" 200"), "{status}");
        body
    }

    /// Starts the server's shutdown without waiting for it (calls in flight drain).
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// A new client with `api_key`.
    pub async fn connect(&self, api_key: Option<&str>) -> Client {
        Client::connect(&format!("http://{}", self.addr), api_key)
            .await
            .expect("connect to the test server")
    }

    /// The private Redis of a [`Backend::Redis`] app.
    pub fn redis(&self) -> Option<&RedisServer> {
        self.redis.as_ref()
    }

    /// The private Redis of a [`Backend::Redis`] app, to pause, kill or restart.
    pub fn redis_mut(&mut self) -> Option<&mut RedisServer> {
        self.redis.as_mut()
    }

    /// Moves the server's clock forward: the service's time on both backends, and the
    /// store's time on the embedded store only (Redis keeps its own; see the module docs).
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The service's time (the manual clock), in milliseconds since the epoch: what consent
    /// events are stamped with.
    pub fn now_millis(&self) -> i64 {
        use vicinity::domain::Clock;
        self.clock.now().as_millis()
    }

    /// The store's time, in milliseconds since the epoch: what `last_active`, `purge_at` and
    /// the order epoch come from. The manual clock on memory, `TIME` on Redis.
    pub async fn store_now_millis(&self) -> i64 {
        let Some(redis) = &self.redis else {
            return self.now_millis();
        };
        let client = redis::Client::open(redis.url()).expect("a redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis");
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .expect("TIME");
        secs * 1_000 + micros / 1_000
    }

    /// Waits until the store's time is at least `at` (ms since the epoch): advances the
    /// manual clock on memory, sleeps on Redis. Panics rather than sleep over 10 s.
    pub async fn wait_for_store_time(&self, at: i64) {
        loop {
            let now = self.store_now_millis().await;
            if now >= at {
                return;
            }
            let wait = Duration::from_millis((at - now) as u64);
            assert!(wait <= Duration::from_secs(10), "a test sleeps {wait:?}");
            match self.backend {
                Backend::Memory => self.advance(wait),
                Backend::Redis => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Makes sure no order epoch starts in the next `within` of store time, waiting past the
    /// next start if it is that close: tests that compare two separate queries' order need
    /// both in one epoch. On memory the store's time stands still unless a test advances it.
    pub async fn keep_one_order_epoch_for(&self, within: Duration) {
        let epoch = ORDER_EPOCH_MILLIS;
        let now = self.store_now_millis().await;
        let next = (now / epoch + 1) * epoch;
        let epoch_at = |ms| OrderContext::epoch_at(Timestamp::from_millis(ms));
        assert_eq!(
            epoch_at(next - 1) + 1,
            epoch_at(next),
            "ORDER_EPOCH changed"
        );
        if next - now <= within.as_millis() as i64 {
            self.wait_for_store_time(next).await;
        }
    }

    /// Kills the server: its task is dropped at once, calls in flight with it (no drain). Tasks
    /// it spawned (a detached purge) live on in the test's runtime, as they would not in a
    /// killed process: the sweep of another node finishes what they owed.
    pub fn kill(&mut self) {
        drop(self.shutdown.take());
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Triggers shutdown and waits for `server::run` to return (at most the drain timeout
    /// and a margin); `None` when it did not return in time.
    pub async fn stop(&mut self) -> Option<Result<(), ServerError>> {
        drop(self.shutdown.take());
        let server = self.server.take()?;
        let bound = DRAIN_TIMEOUT + Duration::from_secs(5);
        match tokio::time::timeout(bound, server).await {
            Ok(joined) => Some(joined.expect("server::run does not panic")),
            Err(_) => None,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if std::thread::panicking() {
            return;
        }
        // Let the server finish (and log) what it was doing before the log is checked; that
        // needs a multi-threaded runtime, which every test here uses.
        if let Some(server) = self.server.take() {
            let handle = tokio::runtime::Handle::current();
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(|| {
                    let bound = DRAIN_TIMEOUT + Duration::from_secs(5);
                    let _ = handle.block_on(tokio::time::timeout(bound, server));
                });
            }
        }
        capture::assert_no_location_since(self.log_start);
    }
}

/// A retention window for tests, checked like the server checks it.
pub fn retention(window: Duration) -> Retention {
    Retention::new(window).expect("a valid retention")
}

/// `GET path` over HTTP/1.0 (no chunked answer; the connection closes at its end), bounded by
/// 10 s: the status line and the body (`None`: no answer).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .ok()?
        .ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}
