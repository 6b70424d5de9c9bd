//! Wiring: stores, service, gRPC services, health and reflection, and a bounded graceful
//! shutdown. `run` serves on a listener the caller bound, so tests can use port 0.

mod connections;
mod deferred;
pub mod health;
mod scrape;
mod tls;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use self::deferred::Deferred;
use crate::{
    config::Config,
    config::{ConnectionLimits, ServerTls, StoreConfig},
    domain::nearby::{Pseudonyms, Tickets},
    grpc::MAX_CALL_TIME,
    grpc::{
        Auth, GrpcApi,
        pb::{
            self, consent_service_server::ConsentServiceServer,
            people_nearby_server::PeopleNearbyServer, privacy_service_server::PrivacyServiceServer,
            shake_server::ShakeServer,
        },
    },
    service::{Deps, Vicinity},
    storage::{
        ConsentStore, LimitStore, LocationStore, MemoryStore, ShakeStore, StoreError,
        redis::{self, Nodes, RedisConsentStore, RedisStore, Target},
    },
    telemetry::{metrics, rpc::RpcLayer},
};

/// The largest request accepted, in bytes (a full block list is about 130 KiB).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Why the server did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Open mode on a non-loopback address.
    #[error(
        "refusing to serve without API keys on {0}: open mode is for loopback only (pass --api-keys)"
    )]
    OpenOnPublicAddress(std::net::SocketAddr),
    /// A non-loopback address without mutual TLS (and without `--allow-plaintext-public`).
    #[error(
        "refusing to serve on {0} without mutual TLS: pass --tls-cert, --tls-key and --tls-client-ca, or --allow-plaintext-public when a proxy in front provides it"
    )]
    PublicWithoutMutualTls(std::net::SocketAddr),
    /// The listener has no address.
    #[error("cannot read the listener's address: {0}")]
    Listener(#[from] std::io::Error),
    /// Reflection could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The location store keeps data on disk and no flag allows it (its URL, redacted).
    #[error(
        "the location store at {0} persists to disk (save/appendonly): purged locations would remain in RDB/AOF files; run it with --save \"\" --appendonly no, or pass --allow-persistent-location-store"
    )]
    PersistentLocationStore(String),
    /// A store could not be reached or checked at start-up.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A store named by a flag could not be reached or checked at start-up: the flag, the
    /// store's URL (redacted) and what failed.
    #[error("{flag} {url}")]
    StoreAtStart {
        /// The flag (or its variable) that names the store.
        flag: &'static str,
        /// Its URL, without the password.
        url: String,
        /// What failed.
        #[source]
        error: StoreError,
    },
    /// The system's randomness source failed: no secret, node id or token can be drawn.
    #[error("refusing to start: {0}")]
    Randomness(#[from] crate::random::RandomnessFailed),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The fully-qualified names of the vicinity services, as health reports them.
pub const SERVICE_NAMES: [&str; 4] = [
    "vicinity.v1.ConsentService",
    "vicinity.v1.PeopleNearby",
    "vicinity.v1.Shake",
    "vicinity.v1.PrivacyService",
];

/// The sockets a server takes: gRPC, and the metrics endpoint if there is one. A lone
/// [`TcpListener`] is gRPC only.
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// `GET /metrics` (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(grpc: TcpListener) -> Self {
        Self {
            grpc,
            metrics: None,
        }
    }
}

/// Serves until `shutdown` resolves, then drains calls in flight for at most
/// `config.drain_timeout`.
///
/// The gRPC port serves from the start, while the stores are waited for (`--store-wait`):
/// health answers readiness NOT_SERVING and liveness SERVING, reflection answers, and the
/// vicinity services answer UNAVAILABLE (`STORE_UNAVAILABLE`, retry in a second) until the
/// stores are reached (issue 21 point 4: a gRPC probe sees a node that waits, not a closed
/// port).
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::random::check()?;
    // SIGHUP reloads the place policy and the TLS files: caught from the start, so one sent
    // while the stores are waited for does not end the process.
    let hangups = hangups();
    let Listeners {
        grpc: listener,
        metrics,
    } = listeners.into();
    let addr = listener.local_addr()?;
    if config.auth.is_open() && !addr.ip().is_loopback() {
        return Err(ServerError::OpenOnPublicAddress(addr));
    }
    let mutual = config.tls.as_ref().is_some_and(ServerTls::is_mutual);
    if !addr.ip().is_loopback() && !mutual && !config.allow_plaintext_public {
        return Err(ServerError::PublicWithoutMutualTls(addr));
    }
    warn_about_local_choices(&config);
    let ready = health::Ready::default();
    // The metrics listener answers from the start too: `/livez` 200 (an orchestrator must
    // not restart a process that waits as told), `/readyz` 503.
    let started: scrape::Started = Arc::default();
    let scraper = match metrics {
        Some(listener) => Some(serve_metrics(listener, started.clone(), ready.clone())?),
        None => None,
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    // tonic-health reports "" SERVING from the start: not ready until the first store check
    // says so (a probe must not route calls to a node whose stores nobody has checked).
    let gate = health::Gate::new(ready);
    gate.not_ready_yet(&reporter).await;
    health::alive(&reporter).await;
    let services = Services::default();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let limits = within_file_limit(config.connections);
    let router = Server::builder()
        // A backstop only: handlers answer DEADLINE_EXCEEDED before this answers CANCELLED.
        .timeout(MAX_CALL_TIME + Duration::from_secs(1))
        .max_concurrent_streams(limits.max_streams)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(limits.keepalive))
        .max_connection_age(limits.max_age)
        .max_connection_age_grace(config.drain_timeout)
        .layer(tower::util::option_layer(config.rpc_telemetry.then_some(
            RpcLayer {
                access_log: config.access_log,
            },
        )))
        .layer(connections::CallsLayer)
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted,
        ))
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(services.consent.clone())
        .add_service(services.nearby.clone())
        .add_service(services.shake.clone())
        .add_service(services.privacy.clone());
    let tls = match &config.tls {
        None => "off",
        Some(tls) if tls.is_mutual() => "mutual",
        Some(_) => "server",
    };
    tracing::info!(%addr, open = config.auth.is_open(), tls, "listening");
    let drain = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let (drain, gate, reporter) = (drain.clone(), gate.clone(), reporter.clone());
        async move {
            shutdown.await;
            // Out of the balancer before the drain: readiness off at once, for good.
            gate.close(&reporter).await;
            tracing::info!("shutting down: draining calls in flight");
            drain.notify_one();
        }
    };
    let incoming = connections::limit(TcpListenerStream::new(listener), &limits);
    let serve: std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &config.tls {
            Some(tls) => {
                let incoming = tls::accept(incoming, tls, limits.max_connections);
                Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
            }
            None => Box::pin(router.serve_with_incoming_shutdown(incoming, signal)),
        };
    let serving = async {
        tokio::select! {
            result = serve => result.map_err(ServerError::from),
            () = async { drain.notified().await; tokio::time::sleep(config.drain_timeout).await } => {
                tracing::warn!("drain timed out: closing remaining calls");
                Ok(())
            }
        }
    };
    tokio::pin!(serving);
    let stop = |tasks: &[tokio::task::JoinHandle<()>]| {
        tasks.iter().for_each(tokio::task::JoinHandle::abort);
        if let Some(scraper) = &scraper {
            scraper.abort();
        }
    };
    let start = start(&config, &started, hangups, (reporter, gate), &services);
    let tasks = tokio::select! {
        // Shut down (or failed) before the stores were reached.
        result = &mut serving => {
            stop(&[]);
            return result;
        }
        tasks = start => match tasks {
            Ok(tasks) => tasks,
            Err(error) => {
                stop(&[]);
                return Err(error);
            }
        },
    };
    let result = serving.await;
    stop(&tasks);
    result
}

/// The vicinity services, each answering UNAVAILABLE until [`start`] has reached the stores
/// and filled it.
#[derive(Default)]
struct Services {
    consent: Deferred<ConsentServiceServer<GrpcApi>>,
    nearby: Deferred<PeopleNearbyServer<GrpcApi>>,
    shake: Deferred<ShakeServer<GrpcApi>>,
    privacy: Deferred<PrivacyServiceServer<GrpcApi>>,
}

impl Services {
    /// From now on the services answer through `api`.
    fn fill(&self, api: &GrpcApi) {
        self.consent
            .fill(limit(ConsentServiceServer::new(api.clone())));
        self.nearby
            .fill(limit(PeopleNearbyServer::new(api.clone())));
        self.shake.fill(limit(ShakeServer::new(api.clone())));
        self.privacy
            .fill(limit(PrivacyServiceServer::new(api.clone())));
    }
}

/// Reaches the stores (waiting for them, [`stores_within`]), then builds the service, starts
/// its sweeper, its SIGHUP reloader and its readiness checks, and fills `services`. Returns
/// the tasks it started.
async fn start(
    config: &Config,
    started: &scrape::Started,
    hangups: Hangups,
    (reporter, gate): (tonic_health::server::HealthReporter, health::Gate),
    services: &Services,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ServerError> {
    let (locations, consents, shakes, limits) = stores_within(config).await?;
    let svc = Vicinity::new(Deps {
        locations,
        consents,
        shakes,
        shake_window: config.shake_window,
        clock: config.clock.clone(),
        grid: config.grid,
        retention: config.retention,
        secret: config.secret.clone(),
        limits,
        policy: config.policy,
        receipts: config.receipts.clone(),
        places: config.places.clone(),
    });
    show_settings(config);
    let _ = started.set(svc.clone());
    let sweeper = tokio::spawn(sweep(svc.clone(), config.sweep_interval));
    svc.announce_places();
    let auth = config.auth.clone();
    let reloader = tokio::spawn(reload_on_hangup(
        svc.clone(),
        config.tls.clone(),
        auth.clone(),
        hangups,
    ));
    let health_task = tokio::spawn(health::watch(svc.clone(), reporter, gate));
    let auth = Arc::new(auth);
    services.fill(&GrpcApi::new(
        svc,
        auth,
        config.policy.key_calls,
        config.clock.clone(),
    ));
    tracing::info!("serving");
    Ok(vec![sweeper, reloader, health_task])
}

/// Serves `/metrics`, `/livez` and `/readyz` on `listener` (`/metrics` once `started` holds
/// the service).
fn serve_metrics(
    listener: TcpListener,
    started: scrape::Started,
    ready: health::Ready,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    metrics::record_calls();
    let metrics_addr = listener.local_addr()?;
    if !metrics_addr.ip().is_loopback() {
        tracing::warn!(
            addr = %metrics_addr,
            "the metrics endpoint is plain HTTP without authentication: keep it on a private network"
        );
    }
    tracing::info!(addr = %metrics_addr, "serving metrics");
    Ok(tokio::spawn(scrape::serve(listener, started, ready)))
}

/// `limits` with the connection cap clamped to the file limit, raised first to its hard
/// limit (issue 20 point 5: under `ulimit -n 1024` accepts failed with EMFILE).
fn within_file_limit(mut limits: ConnectionLimits) -> ConnectionLimits {
    let Some(files) = connections::raise_file_limit() else {
        return limits;
    };
    let cap = connections::connection_cap(limits.max_connections, files);
    if cap < limits.max_connections {
        tracing::warn!(
            files,
            asked = limits.max_connections,
            cap,
            "the file limit clamps the connection cap (raise LimitNOFILE / ulimit -n to serve more)"
        );
        limits.max_connections = cap;
    }
    limits
}

/// The location, consent and Shake stores.
type Stores = (
    Arc<dyn LocationStore>,
    Arc<dyn ConsentStore>,
    Arc<dyn ShakeStore>,
    Arc<dyn LimitStore>,
);

/// The first pause between two attempts to reach the stores at start, doubled each time up
/// to [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two attempts to reach the stores at start.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// [`stores`], retried with back-off for up to `config.store_wait` while a store cannot be
/// reached (issue 21 point 4: beside a Redis that starts at the same time, exiting at once
/// is a crash loop); a refusal that retrying cannot change (a persisting location store)
/// ends it at once. Each failed attempt is logged.
async fn stores_within(config: &Config) -> Result<Stores, ServerError> {
    let give_up = tokio::time::Instant::now() + config.store_wait;
    let mut pause = STORE_RETRY_FIRST;
    loop {
        let error = match stores(config).await {
            Ok(stores) => return Ok(stores),
            Err(error @ ServerError::StoreAtStart { .. }) if waits_out(&error) => error,
            Err(other) => return Err(other),
        };
        if tokio::time::Instant::now() + pause > give_up {
            return Err(error);
        }
        tracing::warn!(
            error = %causes(&error),
            retry_in_ms = pause.as_millis() as u64,
            "a store is not reachable yet; retrying (--store-wait bounds this)"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(STORE_RETRY_MAX);
    }
}

/// `error` and its causes on one line, each once (a library's error often repeats its
/// source's text).
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

/// Whether start-up waits `error` out: a store not reachable yet, not a refusal.
fn waits_out(error: &ServerError) -> bool {
    matches!(error, ServerError::StoreAtStart { error, .. } if redis::transient(error))
}

/// The stores the configuration names, after checking what Redis does with data on disk.
async fn stores(config: &Config) -> Result<Stores, ServerError> {
    let StoreConfig::Redis {
        locations,
        consents,
        allow_persistent,
        timeout,
        consent_cache,
    } = &config.store
    else {
        tracing::warn!(
            "using the embedded in-memory store: data is lost on restart and not shared between nodes"
        );
        let tickets = Tickets::new(&config.secret);
        let store = MemoryStore::start(
            config.clock.clone(),
            config.grid,
            tickets,
            config.sweep_interval,
        );
        return Ok((store.clone(), store.clone(), store.clone(), store));
    };
    let tickets = Tickets::new(&config.secret);
    let at_locations = at_start(locations, false);
    let at_consents = at_start(consents, consents != locations);
    for (url, found) in redis::persistence(locations).await.map_err(&at_locations)? {
        if found.persists() && !allow_persistent {
            return Err(ServerError::PersistentLocationStore(redis::redacted(&url)));
        }
        if found.persists() {
            tracing::warn!(
                "the location store persists to disk: purged data may remain in RDB/AOF files"
            );
        }
    }
    if consents == locations {
        tracing::warn!(
            "consent records share the location store: fine for development only (it must not persist, they should)"
        );
    } else if !redis::persistence(consents)
        .await
        .map_err(&at_consents)?
        .iter()
        .all(|(_, p)| p.is_durable())
    {
        tracing::warn!(
            "the consent store is not durable (want appendonly yes, appendfsync always)"
        );
    }
    let location_store = RedisStore::connect(
        locations,
        config.grid,
        tickets,
        Pseudonyms::new(&config.secret),
        config.retention,
        *timeout,
    )
    .await
    .map_err(&at_locations)?;
    let consent_store = RedisConsentStore::connect(consents, *timeout, *consent_cache)
        .await
        .map_err(&at_consents)?;
    let location_store = Arc::new(location_store);
    Ok((
        location_store.clone(),
        Arc::new(consent_store),
        location_store.clone(),
        location_store,
    ))
}

/// How a start-up failure of the store at `target` reads: the flag that names it (the consent
/// store's own flag when `own_consent_flag`) and its URL, without the password.
fn at_start(target: &Target, own_consent_flag: bool) -> impl Fn(StoreError) -> ServerError {
    let (flag, url) = match target.nodes() {
        _ if own_consent_flag => ("--consent-redis-url", target_urls(target)),
        Nodes::Single(_) => ("--redis-url", target_urls(target)),
        Nodes::Cluster(_) => ("--redis-cluster", target_urls(target)),
    };
    move |error| ServerError::StoreAtStart {
        flag,
        url: url.clone(),
        error,
    }
}

/// The URLs of `target`, redacted, comma-separated.
fn target_urls(target: &Target) -> String {
    let urls: Vec<String> = target.urls().iter().map(|u| redis::redacted(u)).collect();
    urls.join(",")
}

/// Runs the purge sweep (deadlines and purges owed) every `interval`, for as long as the
/// server runs. Running it on every node at once is safe.
async fn sweep(svc: Vicinity, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let start = std::time::Instant::now();
        let result = svc.sweep().await;
        let metrics = metrics::get();
        metrics
            .sweep_duration
            .observe(start.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics.sweeps.with_label_values(&[outcome]).inc();
        match result {
            Ok(_) => metrics.sweep_last_success.set(unix_seconds()),
            Err(error) => tracing::warn!(%error, "purge sweep failed; retrying next interval"),
        }
    }
}

/// SIGHUPs from now on (`None`: none can be caught here).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

/// SIGHUPs from now on ([`Hangups`]).
#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|error| {
            tracing::warn!(%error, "no SIGHUP handler: the place policy, the TLS files and the API keys reload only with a restart");
        })
        .ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {
    None
}

/// Reloads the place policy (`--places`), the TLS files and the API keys file on each SIGHUP,
/// for as long as the server runs.
#[cfg(unix)]
async fn reload_on_hangup(svc: Vicinity, tls: Option<ServerTls>, auth: Auth, hangups: Hangups) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        svc.reload_places().await;
        if let Some(tls) = &tls {
            tls::reload(tls).await;
        }
        reload_keys(&auth).await;
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_: Vicinity, _: Option<ServerTls>, _: Auth, _: Hangups) {}

/// Reads the API keys file again (`--api-keys`): calls from now on are checked against the
/// new keys; a file that does not load is refused (logged, counted in
/// `vicinity_api_keys_reload_failures_total`) and the keys in force stay.
async fn reload_keys(auth: &Auth) {
    let keys = auth.clone();
    match tokio::task::spawn_blocking(move || keys.reload()).await {
        Ok(None) => {}
        Ok(Some(Ok(count))) => tracing::info!(keys = count, "API keys reloaded"),
        Ok(Some(Err(error))) => {
            metrics::get().api_keys_reload_failures.inc();
            tracing::error!(%error, "API keys reload refused, the keys in force stay");
        }
        Err(error) => {
            metrics::get().api_keys_reload_failures.inc();
            tracing::error!(%error, "API keys reload did not finish, the keys in force stay");
        }
    }
}

/// Exposes the settings every node sharing a store must agree on (an alert compares them).
fn show_settings(config: &Config) {
    let metrics = metrics::get();
    metrics
        .retention
        .set(config.retention.window().as_secs_f64());
    metrics
        .sweep_interval
        .set(config.sweep_interval.as_secs_f64());
}

/// The system clock as Unix seconds (what Prometheus's `time()` compares with).
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How long an HTTP/2 keepalive ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// tonic answers a request body over the size limit with `OUT_OF_RANGE`; gRPC's status-code
/// convention (and SPEC §4.4) says `RESOURCE_EXHAUSTED`. The service itself never answers
/// `OUT_OF_RANGE`, and only a size-limit answer says "too large".
fn oversized_is_resource_exhausted(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if out_of_range && too_large {
        return crate::grpc::request_too_large(MAX_REQUEST_BYTES).into_http();
    }
    response
}

/// Applies the request size limit to a generated server.
fn limit<S: MessageLimits>(server: S) -> S {
    server.limit(MAX_REQUEST_BYTES)
}

/// The generated servers' size-limit builders, behind one name.
trait MessageLimits {
    fn limit(self, bytes: usize) -> Self;
}

macro_rules! message_limits {
    ($($server:ident),*) => {$(
        impl<T> MessageLimits for $server<T> {
            fn limit(self, bytes: usize) -> Self {
                self.max_decoding_message_size(bytes)
            }
        }
    )*};
}
message_limits!(
    ConsentServiceServer,
    PeopleNearbyServer,
    ShakeServer,
    PrivacyServiceServer
);

fn warn_about_local_choices(config: &Config) {
    if config.auth.is_open() {
        tracing::warn!("no API keys configured: serving open on loopback only");
    }
    if config.secret_is_ephemeral {
        tracing::warn!(
            "no --order-secret: in-band order and page tokens are valid for this process only"
        );
    }
    match &config.receipts {
        Some(signer) => tracing::info!(key_id = signer.key_id(), "consent receipts signed"),
        None => tracing::info!("no --consent-signing-key: consent changes get no receipt"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 point 14: the server draws once before it listens and refuses to start when
    /// the system's randomness fails (it used to carry on with a clock-seeded fallback).
    #[tokio::test]
    async fn a_broken_randomness_source_refuses_to_start() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = Config::local(listener.local_addr().unwrap());
        let _broken = crate::random::break_on_this_thread();

        // Bounded: a server that started anyway would serve until shut down.
        let started = tokio::time::timeout(
            Duration::from_secs(5),
            run(config, listener, std::future::pending()),
        )
        .await
        .expect("refused at once, not serving");

        assert!(
            matches!(started, Err(ServerError::Randomness(_))),
            "{started:?}"
        );
    }
}
