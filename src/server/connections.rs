//! Connection limits (contract §4.5 "Connections"): at most `max_connections` sockets at once
//! and at most `max_per_peer` from one IP address (a socket past either cap is closed at
//! accept, so one peer's silent sockets cannot take every place), a connection on which no
//! call started for
//! `idle_timeout` is closed, and one on which no call started within `first_call_timeout` of
//! its accept too (silent sockets held the cap for the whole idle timeout). HTTP/2 keepalive, the stream cap per connection and the maximum
//! connection age are tonic's own settings (see `server::run`).
//!
//! Idleness is measured in calls, not bytes (HTTP/2 keepalive pings keep bytes flowing on a
//! connection nobody uses): a connection with a call in flight is never idle (a health
//! `Watch` stream may last for hours; one was cut at the idle timeout),
//! and one without counts from the start or end of its last call, whichever is later
//! ([`CallsLayer`] counts them).
//!
//! A failed accept (out of file descriptors, say) pauses the accept loop for
//! [`ACCEPT_BACKOFF`] instead of being retried at once (a core spun on
//! EMFILE); the process raises its file limit at start and the cap is clamped to it
//! ([`connection_cap`]).

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_stream::{Stream, StreamExt};
use tokio_util::task::TaskTracker;
use tonic::{
    body::Body,
    transport::server::{Connected, TlsConnectInfo},
};

use crate::{config::ConnectionLimits, telemetry::metrics};

/// The pause after a failed accept, so the loop does not spin while the failure lasts.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// File descriptors kept out of the connection cap: store connections, the metrics
/// listener and its scrapes, logs, the certificates read at start.
pub const RESERVED_FILES: u64 = 256;

/// `Activity::last_call_ms` before the first call.
const NO_CALL_YET: u64 = u64::MAX;

/// When a connection last started or ended a call, and how many are in flight, shared
/// between the socket and the calls on it (each call finds it in its request extensions).
#[derive(Debug, Clone)]
pub struct Activity {
    epoch: Instant,
    last_call_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
    /// How long after the accept the first call may start.
    first_call_timeout: Duration,
}

impl Activity {
    fn new(first_call_timeout: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            last_call_ms: Arc::new(AtomicU64::new(NO_CALL_YET)),
            in_flight: Arc::default(),
            first_call_timeout,
        }
    }

    /// Notes that a call started or ended now.
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_call_ms.store(ms, Ordering::Relaxed);
    }

    /// A call starts: in flight until the returned guard is dropped.
    fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// When the connection falls idle unless another call starts (the first within
    /// `first_call_timeout` of the accept); `None` while a call is in flight.
    fn idle_at(&self, idle_timeout: Duration) -> Option<Instant> {
        // Acquire pairs with the Release of a call's end: a reader that sees it gone also sees
        // the time it ended.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.last_call_ms.load(Ordering::Relaxed) {
            NO_CALL_YET => self.epoch + self.first_call_timeout.min(idle_timeout),
            last => self.epoch + Duration::from_millis(last) + idle_timeout,
        })
    }
}

/// A call in flight on its connection ([`Activity::begin`]); its end counts as activity.
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A layer around every service that counts each call in flight on its connection, from its
/// request until its response body is done with (a stream's last message, or the client
/// going away).
#[derive(Debug, Clone, Default)]
pub struct CallsLayer {
    /// Each call's handler runs as the service's work (`service::Deps::tasks`): the drain
    /// and the tests wait for handlers whose clients went away, and for what they detached.
    pub tasks: TaskTracker,
}

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            tasks: self.tasks.clone(),
        }
    }
}

/// The service [`CallsLayer`] makes.
#[derive(Debug, Clone)]
pub struct Calls<S> {
    inner: S,
    tasks: TaskTracker,
}

impl<S> tower::Service<http::Request<Body>> for Calls<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // Under TLS the connection's information arrives wrapped in tonic's `TlsConnectInfo`.
        let extensions = request.extensions();
        let activity = extensions.get::<Activity>().or_else(|| {
            extensions
                .get::<TlsConnectInfo<Activity>>()
                .map(TlsConnectInfo::get_ref)
        });
        let call = activity.map(Activity::begin);
        let answer = self.tasks.track_future(self.inner.call(request));
        Box::pin(async move {
            let response = answer.await?;
            Ok(match call {
                Some(call) => response.map(|body| Body::new(Counted { body, _call: call })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its call in flight until it is dropped.
struct Counted {
    body: Body,
    _call: InFlight,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// An accepted socket that holds one of the connection permits and ends (reads as closed)
/// once idle.
pub struct Limited {
    socket: TcpStream,
    _open: Open,
    _permit: OwnedSemaphorePermit,
    _peer: PeerPlace,
    activity: Activity,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl Limited {
    /// The peer's address, if the socket still knows it.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.socket.peer_addr().ok()
    }
}

impl Connected for Limited {
    type ConnectInfo = Activity;

    fn connect_info(&self) -> Activity {
        self.activity.clone()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.idle.as_mut().poll(cx).is_ready() {
            let Some(at) = self.activity.idle_at(self.idle_timeout) else {
                // A call in flight: look again an idle timeout from now.
                let again = Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(again);
                continue;
            };
            if Instant::now() >= at {
                // End of stream: hyper closes the connection.
                return Poll::Ready(Ok(()));
            }
            self.idle.as_mut().reset(at);
        }
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}

/// Connections open per peer address.
pub(super) type Peers = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One of a peer's places; given back when the connection ends.
pub(super) struct PeerPlace {
    peers: Peers,
    ip: IpAddr,
}

impl PeerPlace {
    /// A place for `ip` unless it holds `cap` already.
    pub(super) fn take(peers: &Peers, ip: IpAddr, cap: usize) -> Option<Self> {
        let mut open = peers.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Self {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// One open connection in `vicinity_connections_open`, for as long as it lives.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::get().connections_open.inc();
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::get().connections_open.dec();
    }
}

/// Counts a socket closed at accept (or at its TLS handshake: `super::tls`).
pub(super) fn refused(reason: &str) {
    metrics::get()
        .connections_refused
        .with_label_values(&[reason])
        .inc();
}

/// Wraps accepted sockets: each takes a permit of `max_connections` and a place of its
/// peer's `max_per_peer` (a socket past either is dropped, i.e. closed, at once) and is closed
/// after `idle_timeout` without a call, or `first_call_timeout` after its accept when no call
/// started by then. An accept error is logged and waited out for [`ACCEPT_BACKOFF`].
pub fn limit(
    sockets: impl Stream<Item = io::Result<TcpStream>>,
    limits: &ConnectionLimits,
) -> impl Stream<Item = io::Result<Limited>> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    metrics::get()
        .connections_max
        .set(i64::try_from(limits.max_connections).unwrap_or(i64::MAX));
    let peers = Peers::default();
    let (idle_timeout, first_call_timeout) = (limits.idle_timeout, limits.first_call_timeout);
    let max_per_peer = limits.max_per_peer;
    sockets.then(backed_off).filter_map(move |socket| {
        let socket = socket?;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused("cap");
            tracing::warn!("connection refused: at the connection cap");
            return None;
        };
        let ip = peer_key(socket.peer_addr().ok()?.ip());
        let Some(peer) = PeerPlace::take(&peers, ip, max_per_peer) else {
            refused("per_peer");
            tracing::warn!("connection refused: its peer is at the per-peer cap");
            return None;
        };
        // Without this, replies wait for the client's delayed ACK (measured: p50 14 ms
        // instead of 0.2; tonic's tcp_nodelay applies only to listeners it binds itself).
        let _ = socket.set_nodelay(true);
        let activity = Activity::new(first_call_timeout);
        Some(Ok(Limited {
            socket,
            _open: Open::new(),
            _permit: permit,
            _peer: peer,
            idle: Box::pin(tokio::time::sleep_until(
                activity.idle_at(idle_timeout).unwrap_or_else(Instant::now),
            )),
            activity,
            idle_timeout,
        }))
    })
}

/// What a peer is counted by: its IPv4 address, or its IPv6 /64 (one host is usually given
/// a whole /64, so counting single IPv6 addresses would cap nobody).
pub(super) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

/// An accepted socket, or `None` after an accept error has been logged and waited out.
async fn backed_off(socket: io::Result<TcpStream>) -> Option<TcpStream> {
    match socket {
        Ok(socket) => Some(socket),
        Err(error) => {
            tracing::warn!(%error, "accept failed; pausing the accept loop");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

/// The connection cap `max_connections` allows under a file limit of `files` descriptors
/// (the soft `RLIMIT_NOFILE`): each connection holds one, [`RESERVED_FILES`] are kept for the
/// rest; at least one connection.
pub fn connection_cap(max_connections: usize, files: u64) -> usize {
    let room = files.saturating_sub(RESERVED_FILES).max(1);
    max_connections.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Raises the soft file limit to the hard one and returns the soft limit then in force
/// (`None`: unknown, the platform would not say).
pub fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_reserved_files() {
        assert_eq!(connection_cap(10_000, 1_024), 768);
        assert_eq!(connection_cap(10_000, 1_048_576), 10_000);
        assert_eq!(connection_cap(500, 100), 1, "always at least one");
    }

    #[test]
    fn an_ipv6_peer_counts_by_its_64_and_a_mapped_ipv4_by_its_address() {
        let key = |text: &str| peer_key(text.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    #[test]
    fn a_peer_holds_at_most_its_cap_and_gets_places_back() {
        let peers = Peers::default();
        let ip: IpAddr = "127.0.0.2".parse().expect("an address");
        let other: IpAddr = "127.0.0.3".parse().expect("an address");
        let held: Vec<PeerPlace> = (0..3)
            .map(|_| PeerPlace::take(&peers, ip, 3).expect("a place"))
            .collect();
        assert!(PeerPlace::take(&peers, ip, 3).is_none(), "past its cap");
        assert!(
            PeerPlace::take(&peers, other, 3).is_some(),
            "others unaffected"
        );
        drop(held);
        assert!(PeerPlace::take(&peers, ip, 3).is_some(), "places come back");
        assert!(
            peers.lock().expect("lock").is_empty(),
            "no entry kept for a gone peer"
        );
    }

    /// A lower bound on real time: each error is waited out, so this cannot fail by chance.
    #[tokio::test]
    async fn accept_errors_are_waited_out_not_retried_at_once() {
        let errors = tokio_stream::iter((0..5).map(|_| Err(io::Error::other("EMFILE"))));
        let started = Instant::now();
        let accepted: Vec<_> = limit(errors, &ConnectionLimits::default()).collect().await;
        assert!(accepted.is_empty(), "errors are not handed to the server");
        assert!(
            started.elapsed() >= ACCEPT_BACKOFF * 5,
            "{:?}",
            started.elapsed()
        );
    }
}
