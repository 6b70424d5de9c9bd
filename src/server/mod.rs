//! Wiring: stores, service, gRPC services, health and reflection, and a bounded graceful
//! shutdown. `run` serves on a listener the caller bound, so tests can use port 0.

mod background;
mod connections;
mod deferred;
pub mod health;
mod scrape;
mod stores;
mod tls;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};

use self::{
    background::{Hangups, hangups, reload_on_hangup, sweep, watch_store_settings},
    deferred::Deferred,
    stores::stores_within,
};
use crate::{
    config::{Config, ConnectionLimits, ServerTls},
    grpc::{
        GrpcApi, MAX_CALL_TIME,
        pb::{
            self, consent_service_server::ConsentServiceServer,
            people_nearby_server::PeopleNearbyServer, privacy_service_server::PrivacyServiceServer,
            shake_server::ShakeServer,
        },
    },
    service::{Deps, Vicinity},
    storage::StoreError,
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
    /// A store may evict keys when its memory runs out (its URL, redacted, and the policy).
    #[error(
        "the {store} store at {url} may evict keys (maxmemory-policy {policy}): an evicted clear mark or owed purge would let a location outlive its user's withdrawal; run it with --maxmemory-policy noeviction"
    )]
    EvictingStore {
        /// Which store: "location" or "consent".
        store: &'static str,
        /// Its URL, without the password.
        url: String,
        /// The policy it runs with.
        policy: String,
    },
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
/// stores are reached (a gRPC probe sees a node that waits, not a closed
/// port).
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::random::check()?;
    // SIGHUP reloads the place policy, the TLS files and the API keys: caught from the start,
    // so one sent while the stores are waited for does not end the process.
    let hangups = hangups();
    let Listeners {
        grpc: listener,
        metrics,
    } = listeners.into();
    check_exposure(&config, listener.local_addr()?)?;
    warn_about_local_choices(&config);
    let ready = health::Ready::default();
    // The metrics listener answers from the start too: `/livez` 200 (an orchestrator must
    // not restart a process that waits as told), `/readyz` 503.
    let started: scrape::Started = Arc::default();
    let scraper = metrics
        .map(|listener| serve_metrics(listener, started.clone(), ready.clone()))
        .transpose()?;
    let (reporter, health, gate) = health::at_start(ready).await;
    let services = Services::default();
    let drain = Arc::new(tokio::sync::Notify::new());
    let signal = stop_on(shutdown, (gate.clone(), reporter.clone()), drain.clone());
    let limits = within_file_limit(config.connections);
    let serve =
        serve_grpc(&config, &limits, listener, health, &services, signal).inspect_err(|_| {
            if let Some(scraper) = &scraper {
                scraper.abort();
            }
        })?;
    let serving = drained(serve, &drain, &config.tasks, config.drain_timeout);
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

/// `shutdown`, then readiness off at once and for good (out of the balancer before the
/// drain), then the drain's start told to `drain`.
async fn stop_on(
    shutdown: impl Future<Output = ()> + Send + 'static,
    (gate, reporter): (health::Gate, tonic_health::server::HealthReporter),
    drain: Arc<tokio::sync::Notify>,
) {
    shutdown.await;
    gate.close(&reporter).await;
    tracing::info!("shutting down: draining calls in flight");
    drain.notify_one();
}

/// `serve` to its end, then the work its calls detached (a write or a purge whose caller
/// stopped waiting), all within `timeout` of the drain's start: a purge cut off by the exit
/// is owed and finished by a later sweep, but one that finishes here is not left to it.
async fn drained(
    serve: Serving<'_>,
    drain: &tokio::sync::Notify,
    tasks: &TaskTracker,
    timeout: Duration,
) -> Result<(), ServerError> {
    let deadline = async {
        drain.notified().await;
        tokio::time::sleep(timeout).await;
    };
    tokio::pin!(deadline);
    let served = tokio::select! {
        result = serve => result.map_err(ServerError::from),
        () = &mut deadline => {
            tracing::warn!(left = tasks.len(), "drain timed out: calls in flight left unfinished");
            return Ok(());
        }
    };
    if served.is_ok() {
        tasks.close();
        tokio::select! {
            () = tasks.wait() => {}
            () = &mut deadline => {
                tracing::warn!(left = tasks.len(), "drain timed out: detached work left unfinished");
            }
        }
    }
    served
}

/// Refuses an exposure the flags do not allow: open mode off loopback, or a non-loopback
/// address without mutual TLS (unless a proxy in front is declared to provide it).
fn check_exposure(config: &Config, addr: std::net::SocketAddr) -> Result<(), ServerError> {
    if config.auth.is_open() && !addr.ip().is_loopback() {
        return Err(ServerError::OpenOnPublicAddress(addr));
    }
    let mutual = config.tls.as_ref().is_some_and(ServerTls::is_mutual);
    if !addr.ip().is_loopback() && !mutual && !config.allow_plaintext_public {
        return Err(ServerError::PublicWithoutMutualTls(addr));
    }
    Ok(())
}

/// A gRPC server's run, to its end.
type Serving<'a> = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send + 'a>>;

/// gRPC served on `listener` until `signal`: `health`, reflection and `services`, behind the
/// per-call telemetry, the call tracking and the connection limits, over TLS when configured.
fn serve_grpc<'a>(
    config: &'a Config,
    limits: &'a ConnectionLimits,
    listener: TcpListener,
    health: HealthServer<impl Health>,
    services: &Services,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<Serving<'a>, ServerError> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
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
        .layer(connections::CallsLayer {
            tasks: config.tasks.clone(),
        })
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
    let addr = listener.local_addr()?;
    tracing::info!(%addr, open = config.auth.is_open(), tls, "listening");
    let incoming = connections::limit(TcpListenerStream::new(listener), limits);
    Ok(match &config.tls {
        Some(tls) => {
            let incoming = tls::accept(incoming, tls, limits.max_connections);
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(incoming, signal)),
    })
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
        tasks: config.tasks.clone(),
    });
    show_settings(config);
    let _ = started.set(svc.clone());
    let sweeper = tokio::spawn(sweep(svc.clone(), config.sweep_interval));
    let settings = tokio::spawn(watch_store_settings(
        svc.clone(),
        config.store.clone(),
        config.settings_check_interval,
    ));
    svc.announce_places();
    let auth = config.auth.clone();
    let reloader = tokio::spawn(reload_on_hangup(
        svc.clone(),
        config.tls.clone(),
        auth.clone(),
        hangups,
    ));
    services.fill(&GrpcApi::new(
        svc.clone(),
        Arc::new(auth),
        config.policy.key_calls,
        config.clock.clone(),
    ));
    // Readiness is checked only once the services answer: a probe that sees SERVING never
    // reaches a service still saying "starting".
    let health_task = tokio::spawn(health::watch(svc, reporter, gate));
    tracing::info!("serving");
    Ok(vec![sweeper, settings, reloader, health_task])
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
/// limit (under `ulimit -n 1024` accepts failed with EMFILE).
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
/// convention (and contract §4.4) says `RESOURCE_EXHAUSTED`. The service itself never answers
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
        Some(receipts) => {
            let key_id = receipts.current().key_id().to_owned();
            tracing::info!(key_id, "consent receipts signed");
            if receipts.key_set().is_some() && config.metrics_listen.is_none() {
                tracing::warn!(
                    "--consent-key-set without --metrics-listen: the key set is checked but served nowhere"
                );
            }
        }
        None => tracing::info!("no --consent-signing-key: consent changes get no receipt"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server draws once before it listens and refuses to start when
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
