//! TLS on the gRPC port, handshaken here rather than inside tonic so that certificates reload
//! without a restart ([`reload`], on SIGHUP) and so that a refused handshake (a client without
//! the certificate mutual TLS asks for, one another CA signed, plaintext on a TLS port, a
//! client that never finishes) is counted in `vicinity_connections_refused_total` and logged
//! with its peer's address, as operators of any TLS service look for.
//! Tonic's own acceptor logged these at `debug` only. Reasons:
//!
//! - `tls_handshake`: TLS refused it (no or a foreign client certificate, a client that does
//!   not trust ours, not TLS at all); logged at warn.
//! - `tls_timeout`: not finished within [`TLS_HANDSHAKE_TIMEOUT`]; logged at warn.
//! - `tls_eof`: the connection ended before the handshake did: the peer closed it (a TCP
//!   health check, a port scan) or sent nothing until the first-call timeout closed it; logged
//!   at debug, as a load balancer's probes would otherwise fill the log.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt, future::ready};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::connections::{Limited, refused};
use crate::config::ServerTls;

/// How long a client may take over the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Refusals logged per second at most, so a flood cannot flood the log (the counter counts
/// every one).
const LOGGED_PER_SECOND: u32 = 10;

/// The sockets of `sockets` after their TLS handshake under `tls`, each handshake a task of
/// its own (the key exchange runs on any worker, not on the accept loop), at most
/// `concurrent` at a time (each socket already holds one of the connection permits, so the
/// connection cap bounds them too); a refused, ended or timed-out handshake closes its socket
/// and is counted and logged (see the module docs).
pub fn accept(
    sockets: impl Stream<Item = io::Result<Limited>>,
    tls: &ServerTls,
    concurrent: usize,
) -> impl Stream<Item = io::Result<TlsStream<Limited>>> {
    let tls = tls.clone();
    sockets
        .map(move |socket| {
            // The configuration in force now: a reload (SIGHUP) applies to the next handshake.
            let acceptor = TlsAcceptor::from(tls.config());
            Handshake(tokio::spawn(handshake(acceptor, socket)))
        })
        .buffer_unordered(concurrent.max(1))
        .filter_map(ready)
}

/// One socket's handshake: the TLS stream, its error passed through, or `None` when refused.
async fn handshake(
    acceptor: TlsAcceptor,
    socket: io::Result<Limited>,
) -> Option<io::Result<TlsStream<Limited>>> {
    let socket = match socket {
        Ok(socket) => socket,
        Err(error) => return Some(Err(error)),
    };
    let peer = socket.peer();
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => Some(Ok(stream)),
        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
            refused("tls_eof");
            tracing::debug!(peer = ?peer, "connection ended before its TLS handshake");
            None
        }
        Ok(Err(error)) => {
            refused_handshake(peer, "tls_handshake", &error.to_string());
            None
        }
        Err(_) => {
            refused_handshake(peer, "tls_timeout", "no handshake in time");
            None
        }
    }
}

/// A spawned handshake, aborted if the server drops it unfinished (at shutdown).
struct Handshake(JoinHandle<Option<io::Result<TlsStream<Limited>>>>);

impl Future for Handshake {
    type Output = Option<io::Result<TlsStream<Limited>>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            // A handshake task that panicked closed its socket: nothing to serve.
            joined.unwrap_or(None)
        })
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The second and how many refusals were logged in it.
static LOGGED: Mutex<(u64, u32)> = Mutex::new((0, 0));

/// Counts a refused handshake under `reason` and logs it, at most [`LOGGED_PER_SECOND`]
/// lines a second.
fn refused_handshake(peer: Option<SocketAddr>, reason: &'static str, error: &str) {
    refused(reason);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let log = {
        let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
        if logged.0 != second {
            *logged = (second, 0);
        }
        logged.1 += 1;
        logged.1 <= LOGGED_PER_SECOND
    };
    if log {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        tracing::warn!(
            %peer,
            reason,
            error,
            "TLS handshake refused (vicinity_connections_refused_total counts every one)"
        );
    }
}

/// Reads the TLS files again (SIGHUP): new handshakes use them, connections made before keep
/// theirs; a file that does not load is refused (logged, counted in
/// `vicinity_tls_reload_failures_total`) and the certificates in force stay.
pub async fn reload(tls: &ServerTls) {
    let files = tls.clone();
    let reloaded = tokio::task::spawn_blocking(move || files.reload()).await;
    match reloaded {
        Ok(Ok(true)) => tracing::info!("TLS certificate and key reloaded"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => {
            crate::telemetry::metrics::get().tls_reload_failures.inc();
            tracing::error!(%error, "TLS reload refused, the certificate in force stays");
        }
        Err(error) => {
            crate::telemetry::metrics::get().tls_reload_failures.inc();
            tracing::error!(%error, "TLS reload did not finish, the certificate in force stays");
        }
    }
}
