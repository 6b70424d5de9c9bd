//! TLS and mutual TLS: certificates made at run time (rcgen), a real server
//! over TCP. TLS serves a client that trusts its CA; mutual TLS refuses a client without a
//! certificate and one whose certificate another CA signed; a client trusting the wrong CA
//! refuses the server; plaintext to a TLS port fails cleanly and in time; beyond loopback the
//! server needs mutual TLS (or a proxy declared in front).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use vicinity::{
    client::{Client, ClientTls},
    config::ServerTls,
    grpc::{ApiKeys, Auth},
    server::{self, ServerError},
};

use crate::{
    calls::await_serving,
    capture,
    helpers::{manual_clock, test_config},
};

/// A CA, and a certificate and key it signed.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: String,
    /// The server's certificate (for `localhost` and 127.0.0.1) and key.
    pub server: (String, String),
    /// A client certificate and key.
    pub client: (String, String),
}

impl Pki {
    /// A fresh CA with a server and a client certificate.
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key).expect("a CA");
        let issuer = Issuer::new(params, ca_key);
        let leaf = |names: Vec<String>, ip: bool| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(names).expect("params");
            if ip {
                let localhost = "127.0.0.1".parse().expect("an address");
                params.subject_alt_names.push(SanType::IpAddress(localhost));
            }
            let cert = params.signed_by(&key, &issuer).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            ca: ca.pem(),
            server: leaf(vec!["localhost".into()], true),
            client: leaf(vec!["backend.example".into()], false),
        }
    }

    /// The server's TLS, with client certificates required when `mutual`.
    pub fn server_tls(&self, mutual: bool) -> ServerTls {
        ServerTls::from_pem(
            self.server.0.as_bytes(),
            self.server.1.as_bytes(),
            mutual.then_some(self.ca.as_bytes()),
        )
        .expect("a usable certificate and key")
    }

    /// A client that trusts this CA, with this PKI's client certificate when `with_cert`.
    pub fn client_tls(&self, with_cert: bool) -> ClientTls {
        let identity = with_cert.then_some((self.client.0.as_bytes(), self.client.1.as_bytes()));
        ClientTls::from_pem(self.ca.as_bytes(), identity)
    }

    /// Writes `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key` into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("a directory");
        for (name, text) in [
            ("ca.pem", &self.ca),
            ("server.pem", &self.server.0),
            ("server.key", &self.server.1),
            ("client.pem", &self.client.0),
            ("client.key", &self.client.1),
        ] {
            std::fs::write(dir.join(name), text).expect("write");
        }
        dir.to_owned()
    }
}

/// A test server with TLS, and its stop switch.
struct TlsServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServerError>>,
}

/// A server with `tls` on `bind`, with API keys when `keys`.
async fn serve(bind: &str, tls: ServerTls, keys: bool) -> TlsServer {
    capture::install();
    let listener = TcpListener::bind(bind).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut config = test_config(addr, manual_clock());
    config.tls = Some(tls);
    if keys {
        let keys = ApiKeys::parse("backend app app-key-0123456789abcdef").expect("keys");
        config.auth = Auth::with_keys(keys);
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server::run(config, listener, async {
        let _ = stopped.await;
    }));
    TlsServer { addr, stop, server }
}

impl TlsServer {
    /// SERVING once a health Watch over `https://127.0.0.1:<port>` with `tls` reports it, or
    /// the refusal; bounded in time.
    async fn health(&self, tls: &ClientTls) -> Result<ServingStatus, String> {
        let url = format!("https://127.0.0.1:{}", self.addr.port());
        let call = async {
            let client = Client::connect_with(&url, None, Some(tls))
                .await
                .map_err(|e| e.to_string())?;
            // The server reports NOT_SERVING until its first store check: wait on a Watch.
            await_serving(&client, "")
                .await
                .map_err(|e| e.to_string())?;
            Ok(ServingStatus::Serving)
        };
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
    }

    /// Asserts that a client with `tls` is served.
    async fn assert_serves(&self, tls: &ClientTls) {
        assert_eq!(self.health(tls).await, Ok(ServingStatus::Serving));
    }

    /// Asserts that a client with `tls` gets no answer; `why` says why it must not.
    async fn assert_refuses(&self, tls: &ClientTls, why: &str) {
        let refused = self.health(tls).await;
        assert!(refused.is_err(), "{why}: {refused:?}");
    }

    /// Stops the server and asserts that it stopped cleanly.
    async fn stop(self) {
        drop(self.stop);
        self.server.await.expect("joined").expect("clean stop");
    }
}

/// Our CA and a server on loopback with its certificate (a client certificate required when
/// `mutual`), checked to serve a client of ours.
async fn serving_ours(mutual: bool) -> (Pki, TlsServer) {
    let pki = Pki::new("ours");
    let served = serve("127.0.0.1:0", pki.server_tls(mutual), false).await;
    served.assert_serves(&pki.client_tls(mutual)).await;
    (pki, served)
}

/// Waits until `done` (polled every 10 ms); panics with `what` after 10 s.
async fn within_ten_seconds(mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_a_client_that_trusts_its_ca_and_a_wrong_ca_is_refused() {
    let (_pki, served) = serving_ours(false).await;

    let other = Pki::new("theirs");
    served
        .assert_refuses(
            &other.client_tls(false),
            "a server the client's CA did not sign",
        )
        .await;

    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate_or_with_a_foreign_one() {
    let (pki, served) = serving_ours(true).await;

    let log_start = capture::log_len();
    let refused = vicinity::telemetry::metrics::get()
        .connections_refused
        .with_label_values(&["tls_handshake"]);
    let refused_before = refused.get();
    served
        .assert_refuses(&pki.client_tls(false), "no client certificate")
        .await;
    // The refusal is counted and logged with its peer (each test runs in a
    // process of its own under nextest; under `cargo test` other tests only add to it).
    // The server counts and logs after the client has seen the refusal: wait for it (the
    // counter is the process's, so this refusal is what it gained since).
    let logged = |log: &str| {
        log.lines().any(|l| {
            l.contains("TLS handshake refused")
                && l.contains("tls_handshake")
                && l.contains("127.0.0.1:")
        })
    };
    within_ten_seconds(
        || refused.get() > refused_before && logged(&capture::log_since(log_start)),
        || {
            format!(
                "the refused handshake is counted ({}) and logged with its peer: {}",
                refused.get(),
                capture::log_since(log_start)
            )
        },
    )
    .await;
    // Trusts our server, but presents a certificate another CA signed.
    let other = Pki::new("theirs");
    let foreign = ClientTls::from_pem(
        pki.ca.as_bytes(),
        Some((other.client.0.as_bytes(), other.client.1.as_bytes())),
    );
    served
        .assert_refuses(&foreign, "a foreign client certificate")
        .await;

    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_tls_port_fails_cleanly_and_in_time() {
    let pki = Pki::new("ours");
    let served = serve("127.0.0.1:0", pki.server_tls(true), false).await;
    let addr = served.addr;

    let attempt = async {
        let client = Client::connect(&format!("http://{addr}"), None).await?;
        client.health().check(HealthCheckRequest::default()).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt).await;
    let result = result.expect("fails within 10 s instead of hanging");
    assert!(result.is_err(), "plaintext was answered");
    // A connection closed before any handshake (a TCP health check) is counted apart.
    let ended = vicinity::telemetry::metrics::get()
        .connections_refused
        .with_label_values(&["tls_eof"]);
    let ended_before = ended.get();
    drop(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    within_ten_seconds(
        || ended.get() > ended_before,
        || "tls_eof not counted".to_owned(),
    )
    .await;
    // The server is unharmed.
    served.assert_serves(&pki.client_tls(true)).await;

    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_server_needs_mutual_tls_and_keys() {
    let pki = Pki::new("ours");
    // Keys and server-only TLS: refused at start.
    let TlsServer {
        addr,
        stop: _stop,
        server,
    } = serve("0.0.0.0:0", pki.server_tls(false), true).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("returns at once")
        .expect("joined");
    assert!(
        matches!(refused, Err(ServerError::PublicWithoutMutualTls(a)) if a == addr),
        "{refused:?}"
    );

    // Keys and mutual TLS: served.
    let served = serve("0.0.0.0:0", pki.server_tls(true), true).await;
    assert!(!served.addr.ip().is_loopback());
    served.assert_serves(&pki.client_tls(true)).await;
    served.stop().await;
}
