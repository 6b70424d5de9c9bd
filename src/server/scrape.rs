//! The metrics endpoint (`--metrics-listen`): `GET /metrics` in the Prometheus text format,
//! over plain HTTP/1.1 on its own listener (kept off the gRPC port, so a scraper needs no API
//! key and the metrics port can be firewalled apart). The overdue gauge is read from the
//! store at each scrape, so it is as fresh as the scrape, whatever the sweeper is doing. It
//! answers from the start, while `serve` still waits for its stores (`--store-wait`).
//!
//! The same listener answers the probes an orchestrator's HTTP checks use where the gRPC port
//! wants a client certificate they cannot present: `GET /livez` is 200
//! while the process serves HTTP at all, `GET /readyz` is 200 exactly while the gRPC health
//! service reports readiness SERVING (the same writes set both: `health::Ready`), else 503.
//!
//! It also serves the consent receipts' key set (`--consent-key-set`) at [`KEY_SET_PATH`], for
//! a verifier or a reverse proxy publishing it: public keys only.

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Mutex};

use super::{
    connections::{ACCEPT_BACKOFF, PeerPlace, Peers, peer_key},
    health::Ready,
};
use crate::{service::Vicinity, telemetry::metrics};

/// How long a scrape waits for the store's overdue reading before answering without it.
const OVERDUE_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one overdue reading serves scrapes: however often the endpoint is asked, the
/// store is read at most about once a second (scrapes run every 15 s or so).
const OVERDUE_READING_LIFE: Duration = Duration::from_secs(1);
/// How long one scrape connection may stay open, idle or not.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrape connections served at once at most (a scraper needs one).
const MAX_CONNECTIONS: usize = 16;
/// Scrape connections from one IP address at once at most: a peer that opens sockets and
/// dribbles bytes cannot take every place from the scraper and the probes (48 such sockets left 0 of 56 scrapes answered).
const MAX_PER_PEER: usize = 4;

/// Where the receipts' key set is served (the path docs/operations.md suggests publishing it at).
pub const KEY_SET_PATH: &str = "/.well-known/vicinity-receipts.jwks.json";

/// The service, once its stores are reached: until then the endpoint answers the probes
/// (`/livez` 200, `/readyz` 503) and `/metrics` 503.
pub type Started = Arc<OnceLock<Vicinity>>;

/// The last overdue reading and when it was taken; its lock makes concurrent scrapes share one
/// store read.
type Reading = Arc<Mutex<Option<Instant>>>;

/// Serves `/metrics`, `/livez` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, svc: Started, ready: Ready) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let peers = Peers::default();
    let reading = Reading::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(place) = PeerPlace::take(&peers, peer_key(peer.ip()), MAX_PER_PEER) else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (svc, reading, ready) = (svc.clone(), reading.clone(), ready.clone());
        tokio::spawn(async move {
            let answer = service_fn(move |request| {
                answer(request, svc.clone(), reading.clone(), ready.is_ready())
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), answer);
            drop(tokio::time::timeout(CONNECTION_LIFETIME, connection).await);
            drop((slot, place));
        });
    }
}

/// Reads the oldest overdue entry's age and the purges owed too long from the stores into
/// their gauges, unless a reading younger than [`OVERDUE_READING_LIFE`] exists.
async fn read_overdue(svc: &Vicinity, reading: &Reading) {
    let mut last = reading.lock().await;
    if last.is_some_and(|at| at.elapsed() < OVERDUE_READING_LIFE) {
        return;
    }
    let readings = async { tokio::join!(svc.oldest_overdue(), svc.owed_purges_stuck()) };
    match tokio::time::timeout(OVERDUE_READ_TIMEOUT, readings).await {
        Ok((age, stuck)) => {
            // A gauge whose read failed keeps its last value; the store errors show in their
            // own series.
            match age {
                Ok(age) => metrics::get().oldest_overdue.set(age.as_secs_f64()),
                Err(error) => tracing::warn!(%error, "could not read the oldest overdue entry"),
            }
            match stuck {
                Ok(n) => metrics::get().owed_stuck.set(n as i64),
                Err(error) => tracing::warn!(%error, "could not read the purges owed"),
            }
        }
        Err(_) => tracing::warn!("reading the overdue entries and purges owed timed out"),
    }
    *last = Some(Instant::now());
}

/// One answer: its status, content type and body.
type Answer = (StatusCode, &'static str, String);

async fn answer(
    request: Request<Incoming>,
    svc: Started,
    reading: Reading,
    ready: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = if request.method() != Method::GET {
        not_found()
    } else {
        match request.uri().path() {
            "/metrics" => match svc.get() {
                Some(svc) => {
                    read_overdue(svc, &reading).await;
                    (StatusCode::OK, metrics::CONTENT_TYPE, metrics::render())
                }
                // The gauges read from the stores would say "nothing overdue" unread: a scrape
                // fails (the target is down) until the stores are reached.
                None => starting(),
            },
            KEY_SET_PATH => key_set(&svc),
            "/livez" => (StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" if ready => (StatusCode::OK, "text/plain", "ready\n".into()),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready\n".into(),
            ),
            _ => not_found(),
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// The receipts' key set (`--consent-key-set`): 404 without one, 503 until the stores are
/// reached (the service that holds it is built then).
fn key_set(svc: &Started) -> Answer {
    match svc.get().map(Vicinity::receipt_key_set) {
        Some(Some(set)) => (StatusCode::OK, "application/jwk-set+json", set.to_string()),
        Some(None) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "no key set: serve --consent-key-set\n".into(),
        ),
        None => starting(),
    }
}

/// What a request for the service's state gets before the stores are reached.
fn starting() -> Answer {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain",
        "starting: waiting for the stores\n".into(),
    )
}

/// What any other request gets.
fn not_found() -> Answer {
    let body = format!("not found: GET /metrics, /livez, /readyz or {KEY_SET_PATH}\n");
    (StatusCode::NOT_FOUND, "text/plain", body)
}
