//! `spawn_app()`: a real server on 127.0.0.1:0 with a manual clock, and a real tonic client
//! connected to it over TCP. Dropping the app shuts the server down and checks that no
//! location reached the log (see `capture`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use vicinity::{
    client::Client,
    config::Config,
    domain::{ManualClock, Retention, Timestamp},
    server::{self, ServerError},
};

use crate::capture;

/// Where every test clock starts: a realistic time (late 2026), not the epoch.
pub const START_MILLIS: i64 = 1_790_000_000_000;
/// The purge sweep interval of test servers.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// How long shutdown may drain calls in test servers.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The store behind a test server. Only the embedded store exists today; a Redis backend adds
/// a variant here that starts its own `redis-server` (stopped with the app) and points the
/// config at it, and every test runs unchanged against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// The embedded in-memory store (what `server::run` uses without a Redis URL).
    #[default]
    Memory,
}

impl Backend {
    /// Adjusts the configuration to serve from this backend.
    fn configure(self, _config: &mut Config) {
        match self {
            Backend::Memory => {}
        }
    }
}

/// A running server and a client connected to it.
pub struct TestApp {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// A client without an API key.
    pub client: Client,
    /// The server's clock: advance it instead of sleeping.
    pub clock: Arc<ManualClock>,
    /// The retention the server was configured with.
    pub retention: Duration,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServerError>>>,
    log_start: usize,
}

/// A server with the test defaults: open on loopback, embedded store, manual clock.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server with the test defaults, adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn(Backend::default(), configure).await
}

/// The test defaults for a server on `addr`.
pub fn test_config(addr: SocketAddr, clock: Arc<ManualClock>) -> Config {
    let mut config = Config::local(addr);
    config.clock = clock;
    config.sweep_interval = SWEEP_INTERVAL;
    config.drain_timeout = DRAIN_TIMEOUT;
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
        backend.configure(&mut config);
        configure(&mut config);
        let retention = config.retention.window();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::run(config, listener, async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        let client = Client::connect(&format!("http://{addr}"), None)
            .await
            .expect("connect to the test server");
        TestApp {
            addr,
            client,
            clock,
            retention,
            shutdown: Some(shutdown),
            server: Some(server),
            log_start,
        }
    }

    /// A new client with `api_key`.
    pub async fn connect(&self, api_key: Option<&str>) -> Client {
        Client::connect(&format!("http://{}", self.addr), api_key)
            .await
            .expect("connect to the test server")
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The server's time, in milliseconds since the epoch.
    pub fn now_millis(&self) -> i64 {
        use vicinity::domain::Clock;
        self.clock.now().as_millis()
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
