//! The server as operators and stock tools see it: health, reflection, the loopback-only open
//! mode (contract §4.5), and a bounded graceful shutdown.

use std::time::{Duration, Instant};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};
use tonic::{Code, transport::Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use vicinity::{
    grpc::{ApiKeys, Auth, pb::Feature},
    server::{self, SERVICE_NAMES, ServerError, health::LIVENESS},
};

use crate::{
    calls::await_serving,
    capture,
    details::{assert_code, refusal},
    helpers::{DRAIN_TIMEOUT, TestApp, manual_clock, spawn_app, test_config},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_to_serve_open_on_a_non_loopback_address() {
    capture::install();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(!addr.ip().is_loopback());
    let config = test_config(addr, manual_clock());

    let run = server::run(config, listener, std::future::pending());
    let result = tokio::time::timeout(Duration::from_secs(5), run).await;

    let result = result.expect("run returns at once instead of serving");
    assert!(
        matches!(result, Err(ServerError::OpenOnPublicAddress(a)) if a == addr),
        "{result:?}"
    );
    let connected = TcpStream::connect(("127.0.0.1", addr.port())).await;
    assert!(connected.is_err(), "something still listens on {addr}");
}

/// Beyond loopback, API keys and plaintext are served only when the operator declares a
/// proxy in front that provides mutual TLS (`--allow-plaintext-public`); tls.rs has the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_keys_and_a_proxy_declared_the_server_serves_on_any_address() {
    capture::install();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = test_config(addr, manual_clock());
    let keys = ApiKeys::parse("backend app app-key-0123456789abcdef").unwrap();
    config.auth = Auth::with_keys(keys);
    config.allow_plaintext_public = true;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(config, listener, async {
        let _ = stopped.await;
    }));

    let url = format!("http://127.0.0.1:{}", addr.port());
    let client = vicinity::client::Client::connect(&url, None).await.unwrap();

    await_serving(&client, "").await.unwrap();
    drop(stop);
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_for_the_server_and_every_service() {
    let app = spawn_app().await;

    assert_eq!(app.health("").await.unwrap(), ServingStatus::Serving);
    // The per-service statuses are set by a task that starts with the server.
    for name in SERVICE_NAMES {
        app.await_serving(name).await.unwrap();
    }
    assert_eq!(
        app.health("vicinity.v1.PeopleNearby").await.unwrap(),
        ServingStatus::Serving
    );
    assert_code(app.health("no.such.Service").await, Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_not_serving_as_shutdown_starts_and_liveness_has_its_own_name() {
    let mut app = spawn_app().await;
    app.await_serving(LIVENESS).await.unwrap();
    let request = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    let mut watch = app
        .client
        .health()
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);

    app.begin_shutdown();

    // The watch is a call in flight, so the drain keeps it open: it sees readiness go.
    let next = tokio::time::timeout(Duration::from_secs(2), watch.message()).await;
    let next = next.expect("in time").unwrap().expect("a status");
    assert_eq!(next.status(), ServingStatus::NotServing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_and_describes_them() {
    let app = spawn_app().await;
    let channel = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "vicinity.v1.PeopleNearby".into(),
        )),
    ];

    let reply = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap();
    let mut answers = reply.into_inner();

    let Some(MessageResponse::ListServicesResponse(listed)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = listed.service.into_iter().map(|s| s.name).collect();
    for name in SERVICE_NAMES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a file descriptor");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_within_the_drain_timeout_and_stops_serving() {
    let mut app = spawn_app().await;
    app.grant("alice", Feature::PeopleNearby).await.unwrap();

    let started = Instant::now();
    let stopped = app.stop().await;

    let elapsed = started.elapsed();
    assert!(matches!(stopped, Some(Ok(()))), "{stopped:?}");
    assert!(elapsed < DRAIN_TIMEOUT, "shutdown took {elapsed:?}");
    // Refused by the client's transport, not by the service: no ErrorInfo. UNAVAILABLE when
    // the client saw its connection close first, CANCELLED when the call went out on it as it
    // closed (the server is gone either way; seen under the suite's load).
    let after = refusal(app.grant("bob", Feature::PeopleNearby).await);
    assert!(
        matches!(after.code(), Code::Unavailable | Code::Cancelled),
        "{after:?}"
    );
    assert!(crate::details::error_info(&after).is_none(), "{after:?}");
    let url = format!("http://{}", app.addr);
    assert!(vicinity::client::Client::connect(&url, None).await.is_err());
}

/// Tonic answers a body over the size limit with OUT_OF_RANGE; contract §4.4
/// and gRPC's convention say RESOURCE_EXHAUSTED. The server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_size_limit_is_resource_exhausted_and_the_server_goes_on() {
    let app = spawn_app().await;
    let mut request = crate::calls::list_request("alice");
    request.exclude_user_ids = (0..3_000).map(|i| format!("{i:0>100}")).collect();

    let refused = app.list_with(request).await;

    let status = refused.expect_err("over 256 KiB");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, _) = crate::details::error_info(&status).expect("an ErrorInfo");
    assert_eq!(reason, "REQUEST_TOO_LARGE");
    // The server goes on serving: alice, who never shared a location, gets the usual answer.
    let after = app.list("alice").await;
    crate::details::assert_reason(after, Code::FailedPrecondition, "CONSENT_REQUIRED");
}

/// A socket that never starts a call is closed at the first-call timeout,
/// long before the idle timeout, so silent sockets cannot hold the connection cap; one that
/// calls is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_calls_is_closed_at_the_first_call_timeout() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.connections.idle_timeout = Duration::from_secs(120);
        c.connections.first_call_timeout = Duration::from_millis(300);
    })
    .await;
    // Taken before the connect: the server's accept, which starts its timer, comes after.
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();

    let closed = closed_within(&mut silent, Duration::from_secs(20)).await;

    assert!(closed.is_some(), "a silent socket stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed before its time"
    );
    assert_a_new_client_is_served(&app, "the server still serves").await;
}

/// Sockets that never start a call are closed after the idle timeout, and
/// sockets past the connection cap at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_and_sockets_past_the_cap_are_closed() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.connections.max_connections = 4;
        c.connections.idle_timeout = Duration::from_millis(400);
    })
    .await;
    // The app's own client holds one connection (it may be idle-closed too, and reconnects).
    let mut sockets = Vec::new();
    for _ in 0..8 {
        sockets.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let started = Instant::now();
    let ends = sockets.iter_mut().map(|socket| async move {
        let closed = closed_within(socket, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "an idle socket stayed open");
        started.elapsed()
    });
    let closed_at = futures_util::future::join_all(ends).await;
    let at_once = closed_at
        .iter()
        .filter(|t| **t < Duration::from_millis(300))
        .count();
    assert!(
        at_once >= 4,
        "sockets past the cap closed at once: {closed_at:?}"
    );
    assert_a_new_client_is_served(&app, "the server still serves").await;
}

/// One peer's sockets past `max_per_peer` are closed at accept, while
/// another peer is served (the peers are two loopback addresses, 127.0.0.2 and 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_past_its_cap_is_refused_and_others_are_served() {
    const PER_PEER: usize = 3;
    let app = crate::helpers::spawn_app_with(|c| {
        c.connections.max_per_peer = PER_PEER;
        c.connections.first_call_timeout = Duration::from_secs(60);
    })
    .await;
    let from_peer = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.2:0".parse().expect("an address"))
            .expect("bind 127.0.0.2");
        socket.connect(app.addr).await.expect("connect")
    };
    let mut held = Vec::new();
    for _ in 0..PER_PEER {
        held.push(from_peer().await);
    }
    let mut past = from_peer().await;
    // Closed at accept: the read ends (the bound only fails a broken server).
    let bytes = closed_within(&mut past, Duration::from_secs(20))
        .await
        .expect("a socket past the per-peer cap stayed open");
    assert!(bytes.is_empty(), "it was not served: {bytes:?}");
    // Counted (each test runs in a process of its own under nextest).
    let metrics = vicinity::telemetry::metrics::get();
    let refused = metrics.connections_refused.with_label_values(&["per_peer"]);
    assert!(refused.get() >= 1, "the refusal is counted");
    assert!(
        metrics.connections_open.get() >= PER_PEER as i64,
        "the held sockets are open"
    );

    assert_a_new_client_is_served(&app, "another peer is served").await;
    // A place given back (once the server has seen that socket close) serves the peer again.
    held.pop();
    let waited = Instant::now();
    loop {
        let mut again = from_peer().await;
        let mut first = [0u8; 1];
        let greeted = tokio::time::timeout(Duration::from_secs(20), again.read(&mut first));
        if greeted.await.ok().and_then(Result::ok) == Some(1) {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the place never came back"
        );
    }
}

/// What `socket` received until the server closed it, if it closed within `within` (the
/// server may greet with its HTTP/2 settings first; then the socket must end).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(within, socket.read_to_end(&mut bytes)).await;
    read.ok().map(|_| bytes)
}

/// Asserts that a new client of `app` gets a health answer; `what` says what that shows.
async fn assert_a_new_client_is_served(app: &TestApp, what: &str) {
    let fresh = app.connect(None).await;
    let request = tonic_health::pb::HealthCheckRequest::default();
    let health = fresh.health().check(request).await;
    assert!(health.is_ok(), "{what}: {health:?}");
}
