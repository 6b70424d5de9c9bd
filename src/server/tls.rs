//! TLS on the gRPC port, handshaken here rather than inside tonic so that certificates reload
//! without a restart ([`reload`], on SIGHUP) and so that a refused handshake
//! (a client without the certificate mutual TLS asks for, one another CA signed, plaintext on a
//! TLS port, a client that never finishes) is counted in `vicinity_connections_refused_total`
//! (`tls_handshake`, `tls_timeout`) and logged with its peer's address, as operators of any
//! TLS service look for (issue 21 point 6). Tonic's own acceptor logged these at `debug` only.

use std::{
    io,
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use futures_util::{Stream, StreamExt, future::ready};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::connections::{Limited, refused};
use crate::config::ServerTls;

/// How long a client may take over the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sockets of `sockets` after their TLS handshake under `tls`, at most `concurrent`
/// handshakes at a time (each socket already holds one of the connection permits, so the
/// connection cap bounds them too); a refused or timed-out handshake closes its socket, is
/// counted and logged (at most one line a second, so a flood cannot flood the log).
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
            async move {
                let socket = match socket {
                    Ok(socket) => socket,
                    Err(error) => return Some(Err(error)),
                };
                let peer = socket.peer();
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => Some(Ok(stream)),
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
        })
        .buffer_unordered(concurrent.max(1))
        .filter_map(ready)
}

/// The Unix second of the last refusal logged.
static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);

/// Counts a refused handshake under `reason` and logs it, at most once a second.
fn refused_handshake(peer: Option<SocketAddr>, reason: &'static str, error: &str) {
    refused(reason);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_LOGGED.swap(second, Ordering::Relaxed) != second {
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
        Err(error) => tracing::error!(%error, "TLS reload did not finish"),
    }
}
