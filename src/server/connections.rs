//! Connection limits (SPEC §4.5 "Connections"): at most `max_connections` sockets at once
//! (a socket past the cap is closed at accept), a connection on which no call started for
//! `idle_timeout` is closed, and one on which no call started within `first_call_timeout` of
//! its accept too (issue 20 point 5: silent sockets held the cap for the whole idle timeout). HTTP/2 keepalive, the stream cap per connection and the maximum
//! connection age are tonic's own settings (see `server::run`).
//!
//! Idleness is measured from the start of the last call, not from the last byte: HTTP/2
//! keepalive pings keep bytes flowing on a connection nobody uses. Every call ends within
//! `MAX_CALL_TIME` (plus the server's backstop), so a connection whose last call started more
//! than `idle_timeout` ago has no call in flight (the configuration requires `idle_timeout`
//! to be longer than that).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// `Activity::last_call_ms` before the first call.
const NO_CALL_YET: u64 = u64::MAX;

/// When a connection last started a call, shared between the socket and the calls on it
/// (each call finds it in its request extensions).
#[derive(Debug, Clone)]
pub struct Activity {
    epoch: Instant,
    last_call_ms: Arc<AtomicU64>,
    /// How long after the accept the first call may start.
    first_call_timeout: Duration,
}

impl Activity {
    fn new(first_call_timeout: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            last_call_ms: Arc::new(AtomicU64::new(NO_CALL_YET)),
            first_call_timeout,
        }
    }

    /// Notes that a call started now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_call_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection falls idle unless another call starts (the first within
    /// `first_call_timeout` of the accept).
    fn idle_at(&self, idle_timeout: Duration) -> Instant {
        match self.last_call_ms.load(Ordering::Relaxed) {
            NO_CALL_YET => self.epoch + self.first_call_timeout.min(idle_timeout),
            last => self.epoch + Duration::from_millis(last) + idle_timeout,
        }
    }
}

/// An accepted socket that holds one of the connection permits and ends (reads as closed)
/// once idle.
pub struct Limited {
    socket: TcpStream,
    _permit: OwnedSemaphorePermit,
    activity: Activity,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
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
            let at = self.activity.idle_at(self.idle_timeout);
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

/// Wraps accepted sockets: each takes a permit of `max_connections` (a socket past the cap is
/// dropped, i.e. closed, at once) and is closed after `idle_timeout` without a call, or
/// `first_call_timeout` after its accept when no call started by then.
pub fn limit(
    sockets: impl Stream<Item = io::Result<TcpStream>>,
    max_connections: usize,
    idle_timeout: Duration,
    first_call_timeout: Duration,
) -> impl Stream<Item = io::Result<Limited>> {
    let permits = Arc::new(Semaphore::new(max_connections));
    sockets.filter_map(move |socket| {
        let socket = match socket {
            Ok(socket) => socket,
            Err(error) => return Some(Err(error)),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("connection refused: at the connection cap");
            return None;
        };
        // Without this, replies wait for the client's delayed ACK (measured: p50 14 ms
        // instead of 0.2; tonic's tcp_nodelay applies only to listeners it binds itself).
        let _ = socket.set_nodelay(true);
        let activity = Activity::new(first_call_timeout);
        Some(Ok(Limited {
            socket,
            _permit: permit,
            idle: Box::pin(tokio::time::sleep_until(activity.idle_at(idle_timeout))),
            activity,
            idle_timeout,
        }))
    })
}
