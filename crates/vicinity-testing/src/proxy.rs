//! A TCP proxy that injects network faults between a service and a store, as Toxiproxy does:
//! [`FaultProxy`] forwards 127.0.0.1:`port` to an upstream address until told otherwise.
//!
//! The faults are what a network does to a TCP stream, never what it cannot (bytes are
//! never lost, reordered or duplicated inside a connection that goes on):
//!
//! - [`Fault::Latency`]: every chunk, both ways, waits before it is passed on (a latency
//!   spike while it lasts).
//! - [`Fault::Stall`]: a black hole that heals: nothing passes either way and new connections
//!   reach nothing; when the fault ends everything held is delivered, in order (TCP's
//!   retransmissions getting through).
//! - [`Fault::HalfOpen`]: the path dies silently: the connections open now, and those made
//!   while it lasts, swallow what is sent on them with no FIN and no RST; when the fault ends
//!   they are closed (the far end has long forgotten them).
//! - [`FaultProxy::reset`]: every open connection is shut down at once, both ways, whatever
//!   it was carrying (a reset mid-reply).
//!
//! Threads, not a runtime: a pump per direction per connection, each bounded by its sockets'
//! lives; the proxy's threads end when it is dropped.

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

/// How often a blocked pump or the acceptor looks at the fault and the stop flag.
const TICK: Duration = Duration::from_millis(5);
/// The largest chunk a pump moves at once.
const CHUNK: usize = 16 * 1024;

/// A fault the proxy applies until the next [`FaultProxy::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Each chunk, both ways, is held this long first.
    Latency(Duration),
    /// Nothing passes; all of it is delivered when the fault ends.
    Stall,
    /// The connections open now and made meanwhile swallow everything; closed when it ends.
    HalfOpen,
}

/// One proxied connection: its two sockets, and whether it died silently.
#[derive(Debug)]
struct Link {
    client: TcpStream,
    upstream: TcpStream,
    dead: Arc<AtomicBool>,
}

impl Link {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

#[derive(Debug, Default)]
struct Shared {
    fault: Mutex<Option<Fault>>,
    links: Mutex<Vec<Link>>,
    stop: AtomicBool,
}

impl Shared {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fault-injecting TCP proxy on a free port of 127.0.0.1; stops (closing every connection)
/// when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free port and forwards each connection to `upstream`, without fault.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept(&listener, upstream, &accepting))?;
        Ok(Self { addr, shared })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://<addr>/`, for a proxied Redis.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Applies `fault` from now on (`None`: none). Ending [`Fault::HalfOpen`] closes the
    /// connections it killed.
    pub fn set(&self, fault: Option<Fault>) {
        let mut current = self
            .shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if fault == Some(Fault::HalfOpen) {
            for link in self.shared.links().iter() {
                link.dead.store(true, Ordering::SeqCst);
            }
        }
        *current = fault;
        drop(current);
        if fault != Some(Fault::HalfOpen) {
            self.shared.links().retain(|link| {
                let dead = link.dead.load(Ordering::SeqCst);
                if dead {
                    link.close();
                }
                !dead
            });
        }
    }

    /// Shuts every open connection down at once, both ways (new ones are served as before).
    pub fn reset(&self) {
        for link in self.shared.links().drain(..) {
            link.close();
        }
    }

    /// Connections open through the proxy now.
    pub fn connections(&self) -> usize {
        self.shared.links().len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let mut links = self.shared.links();
        self.shared.stop.store(true, Ordering::SeqCst);
        for link in links.drain(..) {
            link.close();
        }
    }
}

/// Accepts until the proxy stops; each connection gets its upstream socket and two pumps.
fn accept(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(TICK);
                continue;
            }
            Err(_) => {
                thread::sleep(TICK);
                continue;
            }
        };
        // A stalled path reaches nothing until it heals.
        while shared.fault() == Some(Fault::Stall) && !shared.stop.load(Ordering::SeqCst) {
            thread::sleep(TICK);
        }
        let Ok(server) = TcpStream::connect(upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(client_rx), Ok(server_rx), Ok(client_tx), Ok(server_tx)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        // Registered under the fault's lock (a `set` sees every link, and a link is born
        // dead exactly while a half-open fault is in force) and the links' (a stopped proxy
        // registers nothing more).
        let fault = shared.fault.lock().unwrap_or_else(PoisonError::into_inner);
        let dead = Arc::new(AtomicBool::new(*fault == Some(Fault::HalfOpen)));
        let link = Link {
            client,
            upstream: server,
            dead: dead.clone(),
        };
        let mut links = shared.links();
        if shared.stop.load(Ordering::SeqCst) {
            link.close();
            return;
        }
        links.push(link);
        drop((links, fault));
        for (from, to) in [(client_rx, server_tx), (server_rx, client_tx)] {
            let (shared, dead) = (shared.clone(), dead.clone());
            let _ = thread::Builder::new()
                .name("fault-proxy-pump".into())
                .spawn(move || pump(from, to, &shared, &dead));
        }
    }
}

/// Moves bytes from `from` to `to` under the fault in force, until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, dead: &AtomicBool) {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            if dead.load(Ordering::SeqCst) {
                // Swallowed: the path is gone and nobody says so.
                break;
            }
            match shared.fault() {
                Some(Fault::Stall) if !shared.stop.load(Ordering::SeqCst) => thread::sleep(TICK),
                Some(Fault::Latency(delay)) => {
                    thread::sleep(delay);
                    break;
                }
                _ => break,
            }
        }
        if !dead.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An echo server on a free port: every connection gets its bytes back.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut rx = stream.try_clone().expect("clone");
                    let mut tx = stream;
                    let _ = io::copy(&mut rx, &mut tx);
                });
            }
        });
        addr
    }

    fn connect(proxy: &FaultProxy) -> TcpStream {
        let stream = TcpStream::connect(proxy.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        stream
    }

    /// Sends `message` and reads as much back, or the read's error.
    fn round_trip(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(message)?;
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn it_forwards_and_each_fault_does_what_a_network_would() {
        let proxy = FaultProxy::start(echo()).expect("proxy");
        let mut stream = connect(&proxy);
        assert_eq!(round_trip(&mut stream, b"ping").expect("echo"), b"ping");

        // A stall holds the bytes and delivers them, in order, once it heals.
        proxy.set(Some(Fault::Stall));
        stream.write_all(b"held").expect("write");
        let mut back = [0; 4];
        assert!(
            stream.read_exact(&mut back).is_err(),
            "nothing passes a stall"
        );
        proxy.set(None);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .read_exact(&mut back)
            .expect("delivered after the stall");
        assert_eq!(&back, b"held");

        // Latency delays each chunk.
        proxy.set(Some(Fault::Latency(Duration::from_millis(50))));
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").expect("echo"), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(100), "both ways");
        proxy.set(None);

        // A half-open path swallows, then its connections close when it ends; a new one works.
        proxy.set(Some(Fault::HalfOpen));
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        assert!(round_trip(&mut stream, b"lost").is_err(), "swallowed");
        proxy.set(None);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = Vec::new();
        assert!(
            matches!(stream.read_to_end(&mut rest), Ok(0) | Err(_)),
            "closed when the fault ends, and what was swallowed never comes: {rest:?}"
        );
        let mut fresh = connect(&proxy);
        assert_eq!(round_trip(&mut fresh, b"anew").expect("echo"), b"anew");

        // A reset closes every open connection at once.
        assert_eq!(proxy.connections(), 1);
        proxy.reset();
        fresh
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = Vec::new();
        assert!(matches!(fresh.read_to_end(&mut rest), Ok(0) | Err(_)));
        assert!(rest.is_empty());
        assert_eq!(proxy.connections(), 0);
    }
}
