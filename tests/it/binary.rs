//! The built `vicinity` binary, started the way the README and contract §3.1 show it, and the
//! operator commands against it. The server child logs at TRACE to a file, which must hold no
//! location either.

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use vicinity::{
    client::Client,
    grpc::pb::{self, Gender},
};

use crate::{calls::location, capture, places::HOME};

/// The binary, with no `VICINITY_*` variable inherited from the caller's environment.
pub(crate) fn vicinity() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vicinity"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VICINITY_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

/// Runs a client command against `addr` and returns its output.
pub(crate) fn run(args: &[&str], addr: &str) -> Output {
    vicinity()
        .args(args)
        .args(["--addr", addr])
        .output()
        .expect("run the vicinity binary")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `vicinity serve` child, killed when dropped; its standard error goes to a file.
pub(crate) struct Served {
    child: Child,
    /// Where clients reach it (`http://` or `https://`).
    pub(crate) addr: String,
    log: PathBuf,
    /// What every client command against it needs besides `--addr` (the TLS files).
    pub(crate) client_args: Vec<String>,
}

impl Served {
    /// `vicinity serve --listen 127.0.0.1:<free port>`, once `vicinity health` says SERVING.
    fn start() -> Served {
        Self::start_with(&[])
    }

    /// [`Served::start`] with more arguments for `serve`.
    fn start_with(extra: &[&str]) -> Served {
        Self::start_full(extra, "http", &[])
    }

    /// [`Served::start`] with more arguments for `serve`, reached by `scheme` with
    /// `client_args` added to every client command.
    fn start_full(extra: &[&str], scheme: &str, client_args: &[&str]) -> Served {
        let port = free_port();
        let mut command = vicinity();
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "trace");
        let mut served = Served::spawn(command, port);
        served.addr = format!("{scheme}://127.0.0.1:{port}");
        served.client_args = client_args.iter().map(|a| (*a).to_owned()).collect();
        served.wait_until_serving();
        served
    }

    /// `command` (a `serve` on 127.0.0.1:`port`) started, its standard error to a log file;
    /// not waited for.
    pub(crate) fn spawn(mut command: Command, port: u16) -> Served {
        let log =
            std::env::temp_dir().join(format!("vicinity-it-{}-{port}.log", std::process::id()));
        let child = command
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start vicinity serve");
        Served {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            log,
            client_args: Vec::new(),
        }
    }

    pub(crate) fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.run(&["health"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "vicinity serve never became healthy"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a client command against it.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.client_args.iter().map(String::as_str));
        run(&all, &self.addr)
    }

    /// Sends it SIGHUP (reload the place policy, the TLS files, the API keys).
    fn hangup(&self) {
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
        assert!(sent.expect("kill").success());
    }

    /// Waits (at most 20 s) until its log holds `text`.
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?}:\n{}", self.log());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server has logged so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Served {
    /// Kills the process at once (`SIGKILL`): calls in flight and every task it ran die with it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

#[test]
fn the_binary_serves_as_the_readme_says_and_answers_health() {
    let served = Served::start();

    let health = run(&["health"], &served.addr);
    let liveness = run(&["health", "--service", "liveness"], &served.addr);
    let service = run(
        &["health", "--service", "vicinity.v1.PeopleNearby"],
        &served.addr,
    );
    let unknown = run(&["health", "--service", "no.such.Service"], &served.addr);

    assert!(health.status.success(), "{health:?}");
    assert_eq!(stdout(&health).trim(), "SERVING");
    assert!(liveness.status.success(), "{liveness:?}");
    assert_eq!(stdout(&liveness).trim(), "SERVING");
    assert!(service.status.success(), "{service:?}");
    assert!(!unknown.status.success(), "{unknown:?}");
}

#[test]
fn health_against_nothing_exits_non_zero() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let health = run(&["health"], &format!("http://127.0.0.1:{port}"));

    assert!(!health.status.success(), "{health:?}");
}

/// Without `--order-secret` a node warns that its in-band order and page tokens are its own
/// (nodes behind one balancer need one shared secret); with one it does not.
#[test]
fn serve_warns_without_an_order_secret_and_not_with_one() {
    let warning = "no --order-secret";
    // The warnings are written before the port serves, so before `start` returns.
    let without = Served::start();
    assert!(without.log().contains(warning), "{}", without.log());
    let secret = "5".repeat(64);
    let with = Served::start_with(&["--order-secret", &secret]);
    assert!(!with.log().contains(warning), "{}", with.log());
}

#[test]
fn serve_refuses_a_retention_above_one_hour_with_one_line() {
    let stderr = refused_start(&["--retention", "2h"]);
    assert!(stderr.contains("--retention"), "{stderr}");
}

/// What `vicinity serve --listen 127.0.0.1:0 <args>` writes when it refuses to start, in one
/// line (panics if it serves for 10 s).
fn refused_start(args: &[&str]) -> String {
    let mut child = vicinity()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vicinity serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vicinity serve {args:?} is serving");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn operator_commands_grant_export_and_clear_against_the_binary() {
    let served = Served::start();
    let addr = served.addr.as_str();

    let granted = run(&GRANT_ALICE, addr);
    assert!(granted.status.success(), "{granted:?}");
    assert!(stdout(&granted).contains("alice FEATURE_PEOPLE_NEARBY CONSENT_STATE_GRANTED"));
    update_alice(addr);

    assert_the_export_shows_alices_grant_and_snapped_cell(addr);
    assert_clear_location_purges_alices_entry_once(addr);
    assert_consent_show_and_withdraw_answer_for_alice(addr);
    assert_forget_user_needs_yes_then_deletes_alice(addr);

    let log = without_timestamps(&served.log());
    assert!(log.contains("TRACE"), "the server logged at TRACE");
    let leaks = capture::leaks_in(&log);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// `export` shows alice's grant and her position as stored: the centre of the snapped cell.
fn assert_the_export_shows_alices_grant_and_snapped_cell(addr: &str) {
    let export = run(&["export", "--user", "alice"], addr);
    assert!(export.status.success(), "{export:?}");
    let text = stdout(&export);
    assert!(
        text.contains("CONSENT_STATE_GRANTED notice=2026-01"),
        "{text}"
    );
    // The user's own data, as stored: the centre of the snapped cell.
    let cell = vicinity::domain::SnapGrid::default()
        .snap(vicinity::domain::Coordinates::new(HOME.lat, HOME.lng).unwrap());
    let centre = h3o::LatLng::from(cell);
    let shown = format!(
        "FEATURE_PEOPLE_NEARBY at {},{} (±201 m)",
        centre.lat(),
        centre.lng()
    );
    assert!(text.contains(&shown), "{text}");
}

/// `clear-location` purges alice's entry once, then nothing; her export keeps her grant.
fn assert_clear_location_purges_alices_entry_once(addr: &str) {
    let cleared = run(&["clear-location", "--user", "alice"], addr);
    assert!(cleared.status.success(), "{cleared:?}");
    assert_eq!(stdout(&cleared).trim(), "purged 1 entries");
    let again = run(&["clear-location", "--user", "alice"], addr);
    assert_eq!(stdout(&again).trim(), "purged 0 entries");
    let after = stdout(&run(&["export", "--user", "alice"], addr));
    assert!(
        !after.contains(" at ") && after.contains("CONSENT_STATE_GRANTED"),
        "{after}"
    );
}

/// `consent show` shows alice's grant and `consent withdraw` withdraws it.
fn assert_consent_show_and_withdraw_answer_for_alice(addr: &str) {
    let shown = run(&["consent", "show", "--user", "alice"], addr);
    assert!(
        stdout(&shown).contains("CONSENT_STATE_GRANTED"),
        "{shown:?}"
    );
    let withdrawn = run(
        &[
            "consent",
            "withdraw",
            "--user",
            "alice",
            "--feature",
            "people-nearby",
        ],
        addr,
    );
    assert!(
        stdout(&withdrawn).contains("CONSENT_STATE_WITHDRAWN"),
        "{withdrawn:?}"
    );
}

/// `forget-user` changes nothing without `--yes`, and with it deletes alice's records.
fn assert_forget_user_needs_yes_then_deletes_alice(addr: &str) {
    // Account deletion from the CLI, only with --yes.
    let unconfirmed = run(&["forget-user", "--user", "alice"], addr);
    assert!(!unconfirmed.status.success(), "{unconfirmed:?}");
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let still = stdout(&run(&["consent", "show", "--user", "alice"], addr));
    assert!(still.contains("CONSENT_STATE_WITHDRAWN"), "{still}");
    let forgotten = run(&["forget-user", "--user", "alice", "--yes"], addr);
    assert!(forgotten.status.success(), "{forgotten:?}");
    assert!(
        stdout(&forgotten).starts_with("purged 0 entries, deleted "),
        "{forgotten:?}"
    );
    let gone = stdout(&run(&["consent", "show", "--user", "alice"], addr));
    assert!(!gone.contains("CONSENT_STATE_WITHDRAWN"), "{gone}");
}

/// Sends Alice's position at HOME through the library client.
fn update_alice(addr: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::connect(addr, None).await.unwrap();
        let request = pb::UpdateLocationRequest {
            user_id: "alice".into(),
            location: Some(location(HOME)),
            gender: Gender::Female.into(),
        };
        client.nearby().update_location(request).await.unwrap();
    });
}

/// The log without colours and timestamps: fractional seconds would look like coordinates.
fn without_timestamps(log: &str) -> String {
    let is_timestamp = |token: &str| {
        let b = token.as_bytes();
        b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && b[13] == b':' && token.ends_with('Z')
    };
    let lines: Vec<String> = log
        .lines()
        .map(|line| {
            let plain = without_ansi(line);
            let tokens: Vec<&str> = plain.split(' ').filter(|t| !is_timestamp(t)).collect();
            tokens.join(" ")
        })
        .collect();
    lines.join("\n")
}

/// `line` without ANSI escape sequences (ESC [ ... letter).
fn without_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn timestamps_and_colours_are_left_out_of_the_leak_check() {
    let line = "\u{1b}[2m2026-11-24T12:39:50.912345Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m cell=8931aa";
    assert_eq!(without_timestamps(line), "DEBUG cell=8931aa");
}

#[test]
fn the_start_up_warnings_name_the_store_actually_used() {
    let embedded = Served::start();
    assert!(embedded.log().contains("embedded in-memory store"));

    let redis = vicinity_testing::redis::RedisServer::start().expect("redis-server starts");
    let on_redis = Served::start_with(&["--redis-url", &redis.url()]);

    let log = on_redis.log();
    assert!(!log.contains("embedded in-memory store"), "{log}");
    assert!(
        log.contains("consent records share the location store"),
        "{log}"
    );
}

/// `vicinity health --addr https://… --ca-cert …` against a mutual-TLS server:
/// SERVING with the client certificate, a failure without it or without the CA file.
#[test]
fn health_over_mutual_tls_with_a_ca_file() {
    let pki = crate::tls::Pki::new("binary");
    let dir = std::env::temp_dir().join(format!("vicinity-tls-{}", std::process::id()));
    let dir = pki.write(&dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    let (client_cert, client_key) = (file("client.pem"), file("client.key"));
    let serve_args = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let client_args = [
        "--ca-cert",
        &ca,
        "--client-cert",
        &client_cert,
        "--client-key",
        &client_key,
    ];
    let served = Served::start_full(&serve_args, "https", &client_args);

    let health = served.run(&["health"]);
    assert!(health.status.success(), "{health:?}");
    assert_eq!(stdout(&health).trim(), "SERVING");

    let without_cert = run(&["health", "--ca-cert", &ca], &served.addr);
    assert!(!without_cert.status.success(), "{without_cert:?}");
    let without_ca = run(&["health"], &served.addr);
    assert!(!without_ca.status.success(), "{without_ca:?}");
    let stderr = String::from_utf8_lossy(&without_ca.stderr);
    assert!(
        stderr.contains("--ca-cert"),
        "says what is missing: {stderr}"
    );
    drop(served);
    let _ = fs::remove_dir_all(&dir);
}

/// SIGHUP reloads the gRPC port's TLS files. A server on one CA's files,
/// the files replaced by another CA's, SIGHUP: clients of the new CA are served and clients
/// of the old one refused; a broken key file is refused on reload (logged and counted) and
/// the certificate in force stays.
#[test]
fn tls_files_reload_on_sighup() {
    let dir = std::env::temp_dir().join(format!("vicinity-tls-reload-{}", std::process::id()));
    let (old, new) = (crate::tls::Pki::new("old"), crate::tls::Pki::new("new"));
    let served_dir = old.write(&dir.join("served"));
    let new_dir = new.write(&dir.join("new"));
    let old_dir = old.write(&dir.join("old"));
    let probes = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let serve_args = reloadable_tls_serve_args(&served_dir, probes);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let old_client = mutual_tls_client_args(&old_dir);
    let old_client: Vec<&str> = old_client.iter().map(String::as_str).collect();
    let served = Served::start_full(&serve_args, "https", &old_client);
    let health = |args: &[String]| {
        let mut all = vec!["health"];
        all.extend(args.iter().map(String::as_str));
        run(&all, &served.addr).status.success()
    };
    assert!(
        !health(&mutual_tls_client_args(&new_dir)),
        "the new CA before the reload"
    );

    for name in ["ca.pem", "server.pem", "server.key"] {
        fs::copy(new_dir.join(name), served_dir.join(name)).expect("copy");
    }
    served.hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health(&mutual_tls_client_args(&new_dir)) {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", served.log());
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !health(&mutual_tls_client_args(&old_dir)),
        "the old CA after the reload"
    );
    assert!(served.log().contains("TLS certificate and key reloaded"));

    fs::write(served_dir.join("server.key"), "not a key").expect("write");
    served.hangup();
    served.wait_for_log("TLS reload refused");
    assert!(
        health(&mutual_tls_client_args(&new_dir)),
        "the certificate in force stays"
    );
    let scraped = http_body(probes, "/metrics").unwrap_or_default();
    assert!(
        scraped.contains("vicinity_tls_reload_failures_total 1"),
        "{scraped}"
    );
    drop(served);
    let _ = fs::remove_dir_all(&dir);
}

/// The path of `name` in `dir`, as a flag's value.
fn file_in(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// `serve` flags for mutual TLS on the files in `served_dir`, with probes on `probes`.
fn reloadable_tls_serve_args(served_dir: &std::path::Path, probes: SocketAddr) -> Vec<String> {
    vec![
        "--tls-cert".to_owned(),
        file_in(served_dir, "server.pem"),
        "--tls-key".to_owned(),
        file_in(served_dir, "server.key"),
        "--tls-client-ca".to_owned(),
        file_in(served_dir, "ca.pem"),
        "--metrics-listen".to_owned(),
        probes.to_string(),
    ]
}

/// Client flags for mutual TLS with the CA and client files in `dir`.
fn mutual_tls_client_args(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--ca-cert".to_owned(),
        file_in(dir, "ca.pem"),
        "--client-cert".to_owned(),
        file_in(dir, "client.pem"),
        "--client-key".to_owned(),
        file_in(dir, "client.key"),
    ]
}

/// SIGHUP reads the API keys file again: a call with the new key passes
/// and one with the old key is refused without a restart; a file that does not load is
/// refused (logged, counted, never naming a key) and the keys in force stay.
#[test]
fn api_keys_reload_on_sighup() {
    let dir = std::env::temp_dir().join(format!("vicinity-keys-reload-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("a directory");
    let keys = dir.join("keys");
    let (old, new) = ("old-key-0123456789abcdef", "new-key-fedcba9876543210");
    fs::write(&keys, format!("backend app,ops {old}\n")).expect("write");
    let probes = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let keys_arg = keys.display().to_string();
    let served = Served::start_with(&[
        "--api-keys",
        &keys_arg,
        "--metrics-listen",
        &probes.to_string(),
    ]);
    let grant = |key: &str| {
        let mut args = GRANT_ALICE.to_vec();
        args.extend(["--api-key", key]);
        served.run(&args).status.success()
    };
    assert!(grant(old));
    assert!(!grant(new), "the new key before the reload");

    fs::write(&keys, format!("backend app,ops {new}\n")).expect("write");
    served.hangup();
    served.wait_for_log("API keys reloaded");
    assert!(grant(new));
    assert!(!grant(old), "the old key after the reload");

    fs::write(&keys, "backend app,ops too-short\n").expect("write");
    served.hangup();
    served.wait_for_log("API keys reload refused");
    assert!(grant(new), "the keys in force stay");
    let scraped = http_body(probes, "/metrics").unwrap_or_default();
    assert!(
        scraped.contains("vicinity_api_keys_reload_failures_total 1"),
        "{scraped}"
    );
    let log = served.log();
    for secret in [old, new, "too-short"] {
        assert!(!log.contains(secret), "a key in the log:\n{log}");
    }
    drop(served);
    let _ = fs::remove_dir_all(&dir);
}

/// `--access-log` logs each call's end at `info` (method, status code,
/// elapsed time), never the user it was for; without it nothing per call reaches `info`.
#[test]
fn the_access_log_names_method_code_and_time_at_info_and_never_the_user() {
    for access_log in [false, true] {
        let port = free_port();
        let mut command = vicinity();
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info");
        if access_log {
            command.arg("--access-log");
        }
        let served = Served::spawn(command, port);
        served.wait_until_serving();
        update_alice_after_grant(&served);
        let lines = || -> Vec<String> {
            let log = served.log();
            let finished = log.lines().filter(|l| l.contains("rpc finished"));
            finished.map(str::to_owned).collect()
        };
        if !access_log {
            assert!(lines().is_empty(), "{}", served.log());
            continue;
        }
        // Written as the answer leaves; waited for rather than assumed.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lines().iter().any(|l| l.contains("UpdateLocation")) {
            assert!(
                Instant::now() < deadline,
                "no access line:\n{}",
                served.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        let lines = lines();
        let line = |method: &str| lines.iter().find(|l| l.contains(method)).cloned();
        let granted = line("ConsentService/GrantConsent").expect("the grant's line");
        let updated = line("PeopleNearby/UpdateLocation").expect("the update's line");
        for line in [&granted, &updated] {
            assert!(
                line.contains(" INFO ") && line.contains("vicinity::access"),
                "{line}"
            );
            assert!(
                line.contains("rpc.code=\"OK\"") || line.contains("rpc.code=OK"),
                "{line}"
            );
            assert!(line.contains("elapsed_us="), "{line}");
        }
        assert!(lines.iter().all(|l| !l.contains("alice")), "{lines:?}");
    }
}

/// A fake OpenTelemetry collector: every span it is sent goes down a channel.
struct Collector(tokio::sync::mpsc::UnboundedSender<otlp::trace::v1::Span>);

use opentelemetry_proto::tonic::{
    self as otlp,
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter();
        for span in spans.flat_map(|r| r.scope_spans).flat_map(|s| s.spans) {
            let _ = self.0.send(span);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The string value of a span attribute.
fn attribute(span: &otlp::trace::v1::Span, key: &str) -> Option<String> {
    use otlp::common::v1::any_value::Value;
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// `--otlp-endpoint`: the binary exports one `rpc` span per call to a
/// collector over OTLP/gRPC, as a child of the caller's `traceparent`, with the method and
/// status code, and no span carries the position the call sent.
#[test]
fn spans_go_to_an_otlp_collector_as_children_of_the_callers_trace() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (endpoint, mut received) = start_a_fake_collector(&runtime);
    let served = Served::start_with(&["--otlp-endpoint", &endpoint]);

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    grant_and_update_alice_under_a_traceparent(&runtime, &served.addr, trace_id, parent_id);
    crate::capture::remember(HOME.lat, HOME.lng);

    let spans = collect_spans_until_both_calls_are_in(&runtime, &mut received);
    assert_the_grant_span_is_a_child_of_the_callers_span(&spans, trace_id, parent_id);
    assert!(
        spans.len() > 2,
        "the service's own spans under the calls: {spans:#?}"
    );
    for span in &spans {
        let text = format!("{span:?}");
        let leaks = crate::capture::leaks_in(&text);
        assert!(
            leaks.is_empty(),
            "a position in a span: {leaks:?} in {text}"
        );
    }
}

/// At the default `RUST_LOG=info`, a call's spans are its `rpc` span and the service's span of
/// its operation; the Redis store's spans under them are at DEBUG and never made (each cost a
/// list about 2 % of the service's CPU: docs/decisions.md, "Span levels and OTLP").
#[test]
fn at_info_only_the_calls_and_the_services_spans_are_made() {
    let redis = vicinity_testing::redis::RedisServer::start().expect("redis");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (endpoint, mut received) = start_a_fake_collector(&runtime);
    let port = free_port();
    let mut command = vicinity();
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--redis-url", &redis.url(), "--otlp-endpoint", &endpoint])
        .env("RUST_LOG", "info");
    let served = Served::spawn(command, port);
    served.wait_until_serving();
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b8");
    grant_and_update_alice_under_a_traceparent(&runtime, &served.addr, trace_id, parent_id);
    let spans = collect_spans_until_both_calls_are_in(&runtime, &mut received);
    let names: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for made in ["rpc", "grant_consent", "update_location"] {
        assert!(names.contains(made), "no {made} span among {names:?}");
    }
    // The Redis store's spans of an UpdateLocation (its fence, its write).
    for unmade in ["fence", "upsert_limited"] {
        assert!(!names.contains(unmade), "{unmade} made at info: {names:?}");
    }
}

/// Starts a [`Collector`] on `runtime`: its endpoint, and the spans it is sent.
fn start_a_fake_collector(
    runtime: &tokio::runtime::Runtime,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<otlp::trace::v1::Span>,
) {
    let (sent, received) = tokio::sync::mpsc::unbounded_channel();
    let collector = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let collector_addr = collector.local_addr().unwrap();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sent)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(collector)),
    );
    let endpoint = format!("http://{collector_addr}");
    (endpoint, received)
}

/// Grants alice People Nearby with the caller's `traceparent`, then updates her location.
fn grant_and_update_alice_under_a_traceparent(
    runtime: &tokio::runtime::Runtime,
    addr: &str,
    trace_id: &str,
    parent_id: &str,
) {
    runtime.block_on(async {
        let client = Client::connect(addr, None).await.unwrap();
        let mut grant = tonic::Request::new(pb::GrantConsentRequest {
            user_id: "alice".into(),
            feature: pb::Feature::PeopleNearby.into(),
            notice_version: "2026-01".into(),
            ..Default::default()
        });
        let traceparent = format!("00-{trace_id}-{parent_id}-01");
        grant
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        client.consent().grant_consent(grant).await.unwrap();
        let update = pb::UpdateLocationRequest {
            user_id: "alice".into(),
            location: Some(location(HOME)),
            gender: Gender::Female.into(),
        };
        client.nearby().update_location(update).await.unwrap();
    });
}

/// Every span until both calls' `rpc` spans are in, then a batch more for their children.
fn collect_spans_until_both_calls_are_in(
    runtime: &tokio::runtime::Runtime,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<otlp::trace::v1::Span>,
) -> Vec<otlp::trace::v1::Span> {
    let mut spans = Vec::new();
    runtime.block_on(async {
        let mut deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut seen = 0;
        while let Ok(Some(span)) = tokio::time::timeout_at(deadline, received.recv()).await {
            if span.name == "rpc" {
                seen += 1;
                if seen == 2 {
                    deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                }
            }
            spans.push(span);
        }
    });
    spans
}

/// Both calls have an `rpc` span; the grant's continues the caller's trace under its span.
fn assert_the_grant_span_is_a_child_of_the_callers_span(
    spans: &[otlp::trace::v1::Span],
    trace_id: &str,
    parent_id: &str,
) {
    let rpc = |method: &str| {
        spans
            .iter()
            .find(|s| attribute(s, "rpc.method").as_deref() == Some(method))
            .cloned()
            .unwrap_or_else(|| panic!("no {method} span among {spans:#?}"))
    };
    rpc("vicinity.v1.PeopleNearby/UpdateLocation");
    let span = rpc("vicinity.v1.ConsentService/GrantConsent");
    assert_eq!(span.name, "rpc");
    assert_eq!(hex::encode(&span.trace_id), trace_id, "the caller's trace");
    assert_eq!(
        hex::encode(&span.parent_span_id),
        parent_id,
        "the caller's span is the parent"
    );
    assert_eq!(attribute(&span, "rpc.code").as_deref(), Some("OK"));
}

/// Runs `command` to its exit (killed after 20 s) and returns its whole output.
fn run_to_exit(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the vicinity binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_redis_password_appears_in_no_output() {
    const SECRET: &str = "Planted-S3cret";
    const WRONG: &str = "Wrong-Planted-S3cret";
    // A persisting Redis with a password: the start-up refusal names the store.
    let redis =
        vicinity_testing::redis::RedisServer::start_with(&["--appendonly", "yes"]).expect("redis");
    let set = redis.cli(&["CONFIG", "SET", "requirepass", SECRET]);
    assert_eq!(set.expect("CONFIG SET"), "OK");
    let url = |password: &str| format!("redis://default:{password}@127.0.0.1:{}/", redis.port());
    let serve = |redis_url: String| {
        let mut command = vicinity();
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis_url,
        ]);
        command
    };
    let refused = run_to_exit(serve(url(SECRET)));
    let wrong = run_to_exit(serve(url(WRONG)));
    let mut help = vicinity();
    help.args(["serve", "--help"])
        .env("VICINITY_REDIS_URL", url(SECRET))
        .env("VICINITY_CONSENT_REDIS_URL", url(SECRET))
        .env("VICINITY_REDIS_CLUSTER", url(SECRET));
    let help = run_to_exit(help);

    for (what, output) in [("refused", &refused), ("wrong", &wrong), ("help", &help)] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains("Planted"),
            "{what}: a password printed:\n{text}"
        );
    }
    assert!(!refused.status.success() && !wrong.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("persists to disk"), "{said}");
    assert!(said.contains("redis://default:***@127.0.0.1"), "{said}");
    assert!(help.status.success(), "{help:?}");
}

/// A loopback port the OS reports free (bound, then let go) for a server to take.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A loopback port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    free_port()
}

/// The last line of a command's standard error (start-up logs come before the error).
fn last_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    stderr.trim().lines().last().unwrap_or_default().to_owned()
}

/// A start-up or client error says which flag to fix, in one line, and
/// names each cause once.
#[test]
fn errors_name_the_flag_in_one_line_and_each_cause_once() {
    let nowhere = format!("redis://127.0.0.1:{}/", closed_port());
    let mut no_locations = vicinity();
    no_locations.args(["serve", "--listen", "127.0.0.1:0", "--redis-url", &nowhere]);
    // Without waiting for the store to come up (the default waits 60 s).
    no_locations.args(["--store-wait", "0s"]);
    let redis = vicinity_testing::redis::RedisServer::start().expect("redis");
    let mut no_consents = vicinity();
    no_consents.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        &redis.url(),
    ]);
    no_consents.args(["--consent-redis-url", &nowhere, "--store-wait", "0s"]);
    let refused = format!("http://127.0.0.1:{}", closed_port());

    let locations = last_error_line(&run_to_exit(no_locations));
    let consents = last_error_line(&run_to_exit(no_consents));
    let bare = last_error_line(&run(&["health"], "127.0.0.1:50051"));
    let client = last_error_line(&run(&["health"], &refused));

    assert!(
        locations.starts_with(&format!("vicinity: --redis-url {nowhere}: ")),
        "{locations}"
    );
    assert!(
        consents.starts_with(&format!("vicinity: --consent-redis-url {nowhere}: ")),
        "{consents}"
    );
    assert!(
        bare.contains("--addr 127.0.0.1:50051") && bare.contains("http://"),
        "{bare}"
    );
    assert!(
        client.starts_with(&format!("vicinity: --addr {refused}: ")),
        "{client}"
    );
    for line in [&locations, &consents, &client] {
        assert_eq!(line.matches("Connection refused").count(), 1, "{line}");
        assert!(!line.contains("connect error: tcp connect error"), "{line}");
    }
}

/// `serve` over `rediss://` for both stores with `--redis-ca-file`: it
/// serves; a CA file that holds no certificate, a client key that does not match its
/// certificate, and TLS settings with no `rediss://` URL to apply to are refused at start,
/// naming the flag.
#[test]
fn serve_reaches_its_stores_over_tls_with_a_ca_file() {
    let (_pki, dir) = crate::redis_tls::new_pki("binary-stores");
    let (locations, consents) = (
        crate::redis_tls::tls_redis(&dir, false),
        crate::redis_tls::tls_redis(&dir, false),
    );
    let ca = dir.join("ca.pem").display().to_string();
    let (on_locations, on_consents) = (
        locations.tls_url().expect("a TLS port"),
        consents.tls_url().expect("a TLS port"),
    );
    let tls_args = [
        "--redis-url",
        &on_locations,
        "--consent-redis-url",
        &on_consents,
        "--redis-ca-file",
        &ca,
    ];
    let served = Served::start_with(&tls_args);
    update_alice_after_grant(&served);
    assert!(
        consents.dbsize().expect("dbsize") > 0,
        "consent written over TLS"
    );
    assert!(locations.dbsize().expect("dbsize") > 0, "written over TLS");
    drop(served);

    let key = dir.join("server.key").display().to_string();
    assert_a_ca_file_without_a_certificate_is_refused(&on_locations, &key);
    assert_a_client_key_not_matching_its_certificate_is_refused(&on_locations, &dir, &key);
    assert_a_ca_file_without_a_rediss_url_is_refused(&locations.url(), &ca);
    let _ = fs::remove_dir_all(&dir);
}

/// `serve` with a `--redis-ca-file` that holds no certificate (`key`) is refused at start.
fn assert_a_ca_file_without_a_certificate_is_refused(on_locations: &str, key: &str) {
    let mut not_a_ca = vicinity();
    not_a_ca.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        on_locations,
    ]);
    not_a_ca.args(["--redis-ca-file", key]);
    let line = last_error_line(&run_to_exit(not_a_ca));
    assert!(
        line.contains("--redis-ca-file") && line.contains("no PEM certificate"),
        "{line}"
    );
}

/// `serve` with a client key (`key`) that does not match the client certificate is refused.
fn assert_a_client_key_not_matching_its_certificate_is_refused(
    on_locations: &str,
    dir: &std::path::Path,
    key: &str,
) {
    let mut mismatched = vicinity();
    mismatched.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        on_locations,
    ]);
    let client_cert = dir.join("client.pem").display().to_string();
    mismatched.args([
        "--redis-client-cert",
        &client_cert,
        "--redis-client-key",
        key,
    ]);
    let line = last_error_line(&run_to_exit(mismatched));
    assert!(
        line.contains("--redis-client-key") && line.contains("does not match"),
        "{line}"
    );
}

/// `serve` with `--redis-ca-file` and only a plain `redis://` URL is refused at start.
fn assert_a_ca_file_without_a_rediss_url_is_refused(plain_url: &str, ca: &str) {
    let mut plain = vicinity();
    plain.args(["serve", "--listen", "127.0.0.1:0", "--redis-url", plain_url]);
    plain.args(["--redis-ca-file", ca]);
    let line = last_error_line(&run_to_exit(plain));
    assert!(
        line.contains("--redis-ca-file") && line.contains("rediss://"),
        "{line}"
    );
}

/// A Redis password from `--redis-password-file` or `VICINITY_REDIS_PASSWORD`:
/// the node serves through a Redis that requires it; a wrong one is refused at start, and
/// neither appears in any output, `serve --help` included.
#[test]
fn serve_takes_the_redis_password_from_a_file_or_the_environment_and_never_shows_it() {
    const SECRET: &str = "Planted-File-S3cret";
    let redis = vicinity_testing::redis::RedisServer::start().expect("redis");
    let set = redis.cli(&["CONFIG", "SET", "requirepass", SECRET]);
    assert_eq!(set.expect("CONFIG SET"), "OK");
    let dir = std::env::temp_dir().join(format!("vicinity-password-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("a directory");
    let file = dir.join("redis-password");
    fs::write(&file, format!("{SECRET}\n")).expect("write");
    let file = file.display().to_string();

    serve_with_the_password_file_without_logging_it(&redis.url(), &file);

    let serve = |password: &str| {
        let mut command = vicinity();
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--redis-url",
                &redis.url(),
            ])
            .env("VICINITY_REDIS_PASSWORD", password);
        command
    };
    let wrong = run_to_exit(serve("Wrong-Planted-S3cret"));
    let mut help = serve(SECRET);
    help.arg("--help");
    let help = run_to_exit(help);
    let no_file = the_error_of_a_missing_password_file(&redis.url());

    assert!(!wrong.status.success(), "{wrong:?}");
    assert!(help.status.success(), "{help:?}");
    for output in [&wrong, &help] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains("Planted"), "a password printed:\n{text}");
    }
    assert!(
        no_file.contains("--redis-password-file: /nonexistent/redis-password"),
        "{no_file}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Sentinels that require a password (`requirepass`) are reached with the one
/// `--redis-sentinel-password-file` holds: the node serves through them; without it, it does
/// not start; the password shows in no output.
#[test]
fn serve_reaches_sentinels_that_require_a_password_with_its_file() {
    const SECRET: &str = "Planted-Sentinel-S3cret";
    let set = vicinity_testing::sentinel::RedisSentinels::start_with_password(Some(SECRET))
        .expect("a primary, a replica and three sentinels");
    let dir = std::env::temp_dir().join(format!("vicinity-sentinel-pw-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("a directory");
    let file = dir.join("sentinel-password");
    fs::write(&file, format!("{SECRET}\n")).expect("write");
    let (url, file) = (set.url(), file.display().to_string());

    let served =
        Served::start_with(&["--redis-url", &url, "--redis-sentinel-password-file", &file]);
    update_alice_after_grant(&served);
    assert!(
        !served.log().contains("Planted"),
        "the log shows the password"
    );
    drop(served);

    let mut without = vicinity();
    without.args(["serve", "--listen", "127.0.0.1:0", "--redis-url", &url]);
    without.args(["--store-wait", "0s"]);
    let refused = run_to_exit(without);
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!said.contains("Planted"), "{said}");
    let _ = fs::remove_dir_all(&dir);
}

/// Serves through the Redis at `redis_url` with the password in `file`, which it never logs.
fn serve_with_the_password_file_without_logging_it(redis_url: &str, file: &str) {
    let served = Served::start_with(&["--redis-url", redis_url, "--redis-password-file", file]);
    update_alice_after_grant(&served);
    assert!(
        !served.log().contains("Planted"),
        "the log shows the password"
    );
    drop(served);
}

/// The last error line of `serve` with a `--redis-password-file` that does not exist.
fn the_error_of_a_missing_password_file(redis_url: &str) -> String {
    let mut no_file = vicinity();
    no_file.args(["serve", "--listen", "127.0.0.1:0", "--redis-url", redis_url]);
    no_file.args(["--redis-password-file", "/nonexistent/redis-password"]);
    last_error_line(&run_to_exit(no_file))
}

/// Under a file limit below what `--max-connections` needs, `serve` clamps
/// its connection cap to the limit (after raising the soft limit to the hard one) and says
/// so, instead of failing accepts with EMFILE at run time.
#[test]
fn serve_clamps_its_connection_cap_to_the_file_limit() {
    let port = free_port();
    let binary = env!("CARGO_BIN_EXE_vicinity");
    let mut sh = Command::new("sh");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VICINITY_") {
            sh.env_remove(name);
        }
    }
    let serve = format!("{binary} serve --listen 127.0.0.1:{port} --max-connections 10000");
    sh.env("RUST_LOG", "warn")
        .args(["-c", &format!("ulimit -n 400 && exec {serve}")]);
    let served = Served::spawn(sh, port);
    served.wait_until_serving();
    let said = without_ansi(&served.log());
    assert!(
        said.contains("the file limit clamps the connection cap"),
        "{said}"
    );
    assert!(
        said.contains("cap=144") && said.contains("files=400"),
        "{said}"
    );
}

/// A store that is down at start is waited for (each attempt logged), and
/// `serve` serves once it comes up, instead of exiting into a crash loop. While it waits, the
/// probes answer alive and not ready, over HTTP on the metrics listener and over gRPC health
/// (an orchestrator must not restart a process that waits as told, nor route calls to it),
/// and a vicinity call answers UNAVAILABLE; then NOT_SERVING turns SERVING without a restart.
#[test]
fn serve_waits_for_a_store_that_comes_up_after_it() {
    let mut redis = vicinity_testing::redis::RedisServer::start().expect("redis");
    redis.kill().expect("stop redis");
    let port = free_port();
    let metrics_port = free_port();
    let probes = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut command = vicinity();
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &probes.to_string()])
        .args(["--redis-url", &redis.url(), "--store-wait", "60s"])
        .env("RUST_LOG", "warn");
    let served = Served::spawn(command, port);
    // Waits for the event (a retry logged), not for a time.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !served.log().contains("a store is not reachable yet") {
        assert!(
            Instant::now() < deadline,
            "no retry logged:\n{}",
            served.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Standard error is a pipe here, not a terminal: no colour codes.
    assert!(!served.log().contains('\u{1b}'), "{}", served.log());
    assert_eq!(http_status(probes, "/livez").as_deref(), Some("200"));
    assert_eq!(http_status(probes, "/readyz").as_deref(), Some("503"));
    assert_eq!(http_status(probes, "/metrics").as_deref(), Some("503"));
    let readiness = served.run(&["health"]);
    assert_eq!(stdout(&readiness).trim(), "NOT_SERVING");
    assert!(!readiness.status.success());
    let liveness = served.run(&["health", "--service", "liveness"]);
    assert_eq!(stdout(&liveness).trim(), "SERVING");
    assert!(liveness.status.success());
    let grant = served.run(&GRANT_ALICE);
    let said = String::from_utf8_lossy(&grant.stderr);
    assert!(!grant.status.success());
    assert!(
        said.contains("unavailable") && said.contains("the stores are not reached yet"),
        "{said}"
    );
    redis.restart().expect("redis comes up");
    served.wait_until_serving();
    assert_eq!(http_status(probes, "/readyz").as_deref(), Some("200"));
    update_alice_after_grant(&served);
}

/// `--version` names the commit the binary was built from and its date.
#[test]
fn the_version_names_its_commit() {
    let out = vicinity().arg("--version").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let expected = commit.unwrap_or_else(|| "no git".to_owned());
    assert!(
        text.starts_with(&format!(
            "vicinity {} ({expected}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

/// The status code of `GET path` at `addr` ([`crate::helpers::http_get`], from a test
/// without a runtime of its own).
pub(crate) fn http_status(addr: SocketAddr, path: &str) -> Option<String> {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (status, _) = runtime.block_on(crate::helpers::http_get(addr, path))?;
    status.split_whitespace().nth(1).map(str::to_owned)
}

/// The operator command that grants alice People Nearby.
pub(crate) const GRANT_ALICE: [&str; 8] = [
    "consent",
    "grant",
    "--user",
    "alice",
    "--feature",
    "people-nearby",
    "--notice-version",
    "2026-01",
];

/// Grants alice People Nearby through the binary, then updates her location.
fn update_alice_after_grant(served: &Served) {
    let granted = served.run(&GRANT_ALICE);
    assert!(granted.status.success(), "{granted:?}");
    update_alice(&served.addr);
}

/// A TLS file that is not what its flag wants is refused at start, in one
/// line naming the flag and the file (before: "peer sent no certificates" at the first
/// handshake, or a chain ending in "KeyMismatch").
#[test]
fn bad_tls_files_are_refused_at_start_naming_their_flag() {
    let pki = crate::tls::Pki::new("bad-files");
    let other = crate::tls::Pki::new("bad-files-other");
    let dir = std::env::temp_dir().join(format!("vicinity-bad-tls-{}", std::process::id()));
    let dir = pki.write(&dir);
    let file = |name: &str| dir.join(name).display().to_string();
    fs::write(dir.join("garbage.pem"), "not a certificate\n").expect("write");
    fs::write(dir.join("other.key"), &other.server.1).expect("write");
    let serve = |cert: &str, key: &str, ca: Option<&str>| {
        let mut command = vicinity();
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ]);
        if let Some(ca) = ca {
            command.args(["--tls-client-ca", ca]);
        }
        last_error_line(&run_to_exit(command))
    };
    let (cert, key, garbage) = (file("server.pem"), file("server.key"), file("garbage.pem"));
    let cases = [
        (
            serve(&garbage, &key, None),
            "--tls-cert",
            "no PEM certificate",
        ),
        (
            serve(&cert, &garbage, None),
            "--tls-key",
            "no PEM private key",
        ),
        (
            serve(&cert, &file("other.key"), None),
            "--tls-key",
            "does not match",
        ),
        (
            serve(&cert, &key, Some(&garbage)),
            "--tls-client-ca",
            "no PEM certificate",
        ),
    ];
    for (line, flag, says) in cases {
        assert!(line.contains(flag) && line.contains(says), "{line}");
        assert!(
            line.contains(&dir.display().to_string()),
            "names the file: {line}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Writes an Ed25519 key pair with `openssl`, as docs/operations.md tells operators to:
/// (private key, public key) paths in `dir`.
fn openssl_ed25519(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (key, public) = (dir.join("receipts.pem"), dir.join("receipts.pub.pem"));
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .expect("openssl");
    assert!(made.success());
    let made = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl");
    assert!(made.success());
    (key, public)
}

/// `vicinity consent verify --public-key PUBLIC RECEIPT`.
fn verify_receipt(public: &std::path::Path, receipt: &str) -> Output {
    vicinity()
        .args(["consent", "verify", "--public-key"])
        .arg(public)
        .arg(receipt)
        .output()
        .expect("run the vicinity binary")
}

/// The JSON payload of a receipt (its middle part), unverified.
fn receipt_record(receipt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = receipt.split('.').nth(1).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON record")
}

/// Every consent change gets a receipt signed with the operator's key
/// (made by openssl), which `vicinity consent verify` checks offline; one byte changed and
/// it fails; the export returns the records with every ISO/IEC TS 27560 mandatory field.
#[test]
fn consent_receipts_verify_offline_and_the_export_carries_every_record_field() {
    let dir = std::env::temp_dir().join(format!("vicinity-it-receipts-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let (key, public) = openssl_ed25519(&dir);
    let served = serve_signing_consent_receipts_with(&key);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (granted, withdrawn, export) = grant_update_withdraw_and_export_alice(&runtime, &served);

    assert_both_receipts_verify_and_an_altered_one_does_not(&public, &granted, &withdrawn);
    assert_the_printed_key_set_verifies_a_receipt(&public, &withdrawn.receipt);
    // The export returns both events with their receipts, as given.
    let history: Vec<&str> = export
        .consent_history
        .iter()
        .map(|e| e.receipt.as_str())
        .collect();
    assert_eq!(history, [&granted.receipt, &withdrawn.receipt]);
    assert_the_record_carries_every_mandatory_field(&receipt_record(&granted.receipt));
    // No record holds a position (alice had one at HOME while they were made).
    for receipt in [&granted.receipt, &withdrawn.receipt] {
        let text = receipt_record(receipt).to_string();
        assert!(
            !text.contains("39.91") && !text.contains("116.39"),
            "{text}"
        );
    }
    // The signing key is a secret: its PEM body is in no line the server wrote (at TRACE).
    let log = served.log();
    assert!(log.contains("consent receipts signed"), "{log}");
    let pem = fs::read_to_string(&key).unwrap();
    let body = pem.lines().find(|l| !l.starts_with("-----")).unwrap();
    assert!(!log.contains(body), "the signing key reached the log");
    fs::remove_dir_all(&dir).unwrap();
}

/// `vicinity serve` signing consent receipts with `key`, for Example Ltd.
fn serve_signing_consent_receipts_with(key: &std::path::Path) -> Served {
    Served::start_with(&signing_args(key))
}

/// The flags that make `serve` sign consent receipts with `key`, for Example Ltd.
fn signing_args(key: &std::path::Path) -> Vec<&str> {
    vec![
        "--consent-signing-key",
        key.to_str().unwrap(),
        "--consent-controller",
        "Example Ltd",
        "--consent-contact",
        "dpo@example.com",
        "--consent-storage-location",
        "EU (Frankfurt)",
        "--consent-jurisdiction",
        "IE",
    ]
}

/// The metrics listener serves the key set `--consent-key-set` names, and that set verifies
/// the receipts the node signs; a set without the signing key is refused at start.
#[test]
fn the_key_set_served_verifies_receipts_and_must_hold_the_signing_key() {
    let dir = std::env::temp_dir().join(format!("vicinity-it-key-set-{}", std::process::id()));
    fs::create_dir_all(dir.join("other")).unwrap();
    let (key, public) = openssl_ed25519(&dir);
    let set = printed_key_set(&public);
    let probes = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (set_arg, probes_arg) = (set.display().to_string(), probes.to_string());
    let mut args = signing_args(&key);
    args.extend([
        "--consent-key-set",
        &set_arg,
        "--metrics-listen",
        &probes_arg,
    ]);
    let served = Served::start_with(&args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (granted, _, _) = grant_update_withdraw_and_export_alice(&runtime, &served);
    let path = "/.well-known/vicinity-receipts.jwks.json";
    let (status, body) = runtime
        .block_on(crate::helpers::http_get(probes, path))
        .expect("an answer");
    assert!(status.contains(" 200"), "{status}");
    let fetched = dir.join("fetched.jwks.json");
    fs::write(&fetched, &body).unwrap();
    let checked = vicinity()
        .args(["consent", "verify", "--jwks"])
        .arg(&fetched)
        .arg(&granted.receipt)
        .output()
        .expect("run the vicinity binary");
    assert!(checked.status.success(), "{body}: {checked:?}");

    // Without the flag there is no set to serve.
    let bare_probes = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bare = Served::start_with(&["--metrics-listen", &bare_probes.to_string()]);
    assert_eq!(http_status(bare_probes, path).as_deref(), Some("404"));
    drop(bare);

    let (_, other) = openssl_ed25519(&dir.join("other"));
    let other_set = printed_key_set(&other).display().to_string();
    let mut args = signing_args(&key);
    args.extend(["--consent-key-set", &other_set]);
    let stderr = refused_start(&args);
    assert!(stderr.contains("does not hold signing key"), "{stderr}");
    fs::remove_dir_all(&dir).unwrap();
}

/// Grants alice People Nearby, updates her position, withdraws and exports: the grant's
/// record, the withdrawal's record and the export.
fn grant_update_withdraw_and_export_alice(
    runtime: &tokio::runtime::Runtime,
    served: &Served,
) -> (
    pb::ConsentRecord,
    pb::ConsentRecord,
    pb::ExportMyDataResponse,
) {
    runtime.block_on(async {
        let client = Client::connect(&served.addr, None).await.unwrap();
        let grant = pb::GrantConsentRequest {
            user_id: "alice".into(),
            feature: pb::Feature::PeopleNearby.into(),
            notice_version: "2026-12".into(),
            source: "app 7.1".into(),
        };
        let granted = client.consent().grant_consent(grant).await.unwrap();
        // A position on record while the receipts are made: none of it may reach one.
        let update = pb::UpdateLocationRequest {
            user_id: "alice".into(),
            location: Some(location(HOME)),
            gender: Gender::Female.into(),
        };
        client.nearby().update_location(update).await.unwrap();
        let withdraw = pb::WithdrawConsentRequest {
            user_id: "alice".into(),
            feature: pb::Feature::PeopleNearby.into(),
        };
        let withdrawn = client.consent().withdraw_consent(withdraw).await.unwrap();
        let export = pb::ExportMyDataRequest {
            user_id: "alice".into(),
        };
        let export = client.privacy().export_my_data(export).await.unwrap();
        (
            granted.into_inner(),
            withdrawn.into_inner().record.unwrap(),
            export.into_inner(),
        )
    })
}

/// `consent verify` accepts both receipts with `public`, and refuses one byte changed.
fn assert_both_receipts_verify_and_an_altered_one_does_not(
    public: &std::path::Path,
    granted: &pb::ConsentRecord,
    withdrawn: &pb::ConsentRecord,
) {
    for (record, kind) in [(granted, "given"), (withdrawn, "withdrawn")] {
        let checked = verify_receipt(public, &record.receipt);
        assert!(checked.status.success(), "{checked:?}");
        let text = stdout(&checked);
        assert!(text.starts_with("valid: signed by key "), "{text}");
        assert!(text.contains(&format!("\"type\": \"{kind}\"")), "{text}");
        assert!(text.contains(&record.consent_id), "{text}");
    }
    // One byte changed, anywhere in the record: refused.
    let mut altered = granted.receipt.clone().into_bytes();
    let middle = granted.receipt.find('.').unwrap() + 10;
    altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
    let refused = verify_receipt(public, &String::from_utf8(altered).unwrap());
    assert!(!refused.status.success(), "{refused:?}");
    let error = last_error_line(&refused);
    assert!(error.contains("signature does not match"), "{error}");
}

/// The key set `consent jwks` prints for `public`, written beside it: its path.
fn printed_key_set(public: &std::path::Path) -> PathBuf {
    let jwks = vicinity()
        .args(["consent", "jwks", "--public-key"])
        .arg(public)
        .output()
        .expect("run the vicinity binary");
    assert!(jwks.status.success(), "{jwks:?}");
    let set: serde_json::Value = serde_json::from_str(&stdout(&jwks)).expect("a JWKS");
    assert_eq!(set["keys"][0]["kty"], "OKP", "{set}");
    assert_eq!(set["keys"][0]["crv"], "Ed25519", "{set}");
    let jwks_file = public.with_extension("jwks.json");
    std::fs::write(&jwks_file, stdout(&jwks)).expect("write the key set");
    jwks_file
}

/// The key set `consent jwks` prints for `public` verifies `receipt` in place of the PEM key.
fn assert_the_printed_key_set_verifies_a_receipt(public: &std::path::Path, receipt: &str) {
    let jwks_file = printed_key_set(public);
    let checked = vicinity()
        .args(["consent", "verify", "--jwks"])
        .arg(&jwks_file)
        .arg(receipt)
        .output()
        .expect("run the vicinity binary");
    assert!(checked.status.success(), "{checked:?}");
    assert!(stdout(&checked).starts_with("valid: signed by key "));
}

/// `record` has each of ISO/IEC TS 27560's mandatory fields, and alice's grant's values.
fn assert_the_record_carries_every_mandatory_field(record: &serde_json::Value) {
    // ISO/IEC TS 27560's mandatory fields, each by name.
    let fields = [
        "/record_id",
        "/schema_version",
        "/principal/id",
        "/notice/version",
        "/notice/language",
        "/purpose/description",
        "/data_categories/0",
        "/controller/name",
        "/controller/contact",
        "/storage_location",
        "/retention/location",
        "/jurisdiction",
        "/recipients",
        "/withdrawal_method",
        "/event/time",
        "/event/type",
        "/event/state",
    ];
    for field in fields {
        let value = record.pointer(field).and_then(|v| v.as_str());
        assert!(
            value.is_some_and(|v| !v.is_empty()),
            "{field} missing from {record:#}"
        );
    }
    assert_eq!(record["principal"]["id"], "alice");
    assert_eq!(record["controller"]["name"], "Example Ltd");
    assert_eq!(record["event"]["state"], "active");
}

/// The body of `GET path` on `addr` (`None`: no answer).
fn http_body(addr: SocketAddr, path: &str) -> Option<String> {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(crate::helpers::http_get(addr, path))
        .map(|(_, body)| body)
}

/// The version label of `vicinity_places_policy_info` in a scrape.
fn policy_version(metrics: &str) -> Option<String> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("vicinity_places_policy_info{"))?;
    let start = line.find("version=\"")? + "version=\"".len();
    Some(line[start..].split('"').next()?.to_owned())
}

/// `vicinity places compile` of one place at `lng,lat` (category `category`) into `out`;
/// returns what it printed.
fn compile_places(
    dir: &std::path::Path,
    lng: f64,
    lat: f64,
    category: &str,
    out: &PathBuf,
) -> String {
    let geojson = dir.join(format!("{category}.geojson"));
    let feature = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature",
            "properties":{{"category":"{category}"}},
            "geometry":{{"type":"Point","coordinates":[{lng},{lat}]}}}}]}}"#
    );
    fs::write(&geojson, feature).unwrap();
    let compiled = vicinity()
        .args(["places", "compile", "--geojson"])
        .arg(&geojson)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs");
    assert!(compiled.status.success(), "{compiled:?}");
    stdout(&compiled)
}

/// `vicinity places compile` writes a policy `serve --places` takes;
/// SIGHUP reloads it (the version in the metrics and the audit trail changes), a bad file is
/// refused on reload and the policy in force stays.
#[test]
fn a_compiled_policy_is_served_and_reloaded_on_sighup() {
    let dir = std::env::temp_dir().join(format!("vicinity-it-places-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("places.policy");
    let printed = compile_places(&dir, 116.4, 39.9, "worship", &policy);
    assert!(printed.contains(" cells, version "), "{printed}");
    let first = printed.trim().rsplit(' ').next().unwrap().to_owned();

    let port = free_port();
    let probes = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut command = vicinity();
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &probes.to_string()])
        .arg("--places")
        .arg(&policy)
        .env("RUST_LOG", "info");
    let served = Served::spawn(command, port);
    served.wait_until_serving();
    let scraped = http_body(probes, "/metrics").unwrap_or_default();
    assert_eq!(policy_version(&scraped).as_deref(), Some(first.as_str()));

    let printed = compile_places(&dir, 116.5, 39.95, "health", &policy);
    let second = printed.trim().rsplit(' ').next().unwrap().to_owned();
    assert_ne!(first, second);
    served.hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while policy_version(&http_body(probes, "/metrics").unwrap_or_default()).as_deref()
        != Some(second.as_str())
    {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", served.log());
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        served.log().contains(&second),
        "the audit trail names the version"
    );

    fs::write(&policy, "not a policy").unwrap();
    served.hangup();
    served.wait_for_log("reload refused");
    let scraped = http_body(probes, "/metrics").unwrap_or_default();
    assert_eq!(policy_version(&scraped).as_deref(), Some(second.as_str()));
    assert!(
        scraped.contains("vicinity_places_reload_failures_total 1"),
        "{scraped}"
    );
    served.wait_until_serving();
    fs::remove_dir_all(&dir).unwrap();
}

/// An OpenStreetMap extract (made here with osmium-tool from OSM XML, as
/// an operator's `osmium extract` would make one) compiles to a policy listing its clinic
/// (a tagged node) and its place of worship (a tagged closed way), not an untagged node.
#[test]
fn an_openstreetmap_extract_compiles_to_a_policy() {
    use vicinity::places::{Category, Placement, Policy};

    let dir = std::env::temp_dir().join(format!("vicinity-it-osm-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let (clinic, plain) = ((39.931_234, 116.421_234), (39.801_234, 116.301_234));
    let xml = osm_xml_of_a_clinic_a_plain_node_a_temple_and_a_hospital(clinic, plain);
    let policy = compile_an_osm_extract(&dir, xml);

    let policy = Policy::load(&policy).expect("a policy");
    let cell = |(lat, lng): (f64, f64)| {
        h3o::LatLng::new(lat, lng)
            .unwrap()
            .to_cell(h3o::Resolution::Nine)
    };
    let inside = |at| match policy.place(cell(at)) {
        Placement::Coarse { inside, .. } => inside,
        Placement::Hidden(category) => Some(category),
        Placement::Exact(_) => None,
    };
    assert_eq!(inside(clinic), Some(Category::Health));
    assert_eq!(inside((39.952, 116.452)), Some(Category::Worship));
    assert_eq!(
        inside((39.862, 116.362)),
        Some(Category::Health),
        "inside the relation's ring"
    );
    assert_eq!(inside(plain), None, "an untagged node is no place");
    fs::remove_dir_all(&dir).unwrap();
}

/// An OSM XML node element with `tags` inside.
fn osm_node(id: u32, lat: f64, lon: f64, tags: &str) -> String {
    format!(
        "<node id='{id}' version='1' timestamp='2026-01-01T00:00:00Z' \
         lat='{lat}' lon='{lon}'>{tags}</node>"
    )
}

/// OSM XML of a clinic node at `clinic`, an untagged node at `plain`, a place of worship as a
/// closed way and a hospital as a multipolygon relation.
fn osm_xml_of_a_clinic_a_plain_node_a_temple_and_a_hospital(
    clinic: (f64, f64),
    plain: (f64, f64),
) -> String {
    let square = [
        (39.951, 116.451),
        (39.951, 116.453),
        (39.953, 116.453),
        (39.953, 116.451),
    ];
    let mut xml = String::from("<?xml version='1.0' encoding='UTF-8'?>\n<osm version='0.6'>\n");
    xml += &osm_node(1, clinic.0, clinic.1, "<tag k='amenity' v='clinic'/>");
    xml += &osm_node(2, plain.0, plain.1, "");
    for (i, (lat, lon)) in square.iter().enumerate() {
        xml += &osm_node(10 + i as u32, *lat, *lon, "");
    }
    xml += "<way id='100' version='1' timestamp='2026-01-01T00:00:00Z'>";
    for id in [10, 11, 12, 13, 10] {
        xml += &format!("<nd ref='{id}'/>");
    }
    xml += "<tag k='amenity' v='place_of_worship'/></way>\n";
    xml += &osm_xml_of_a_hospital_as_a_multipolygon_relation();
    xml += "</osm>\n";
    xml
}

/// OSM XML of a hospital mapped only as a multipolygon relation of two open ways.
fn osm_xml_of_a_hospital_as_a_multipolygon_relation() -> String {
    let mut xml = String::new();
    let hospital = [
        (39.861, 116.361),
        (39.861, 116.363),
        (39.863, 116.363),
        (39.863, 116.361),
    ];
    for (i, (lat, lon)) in hospital.iter().enumerate() {
        xml += &osm_node(20 + i as u32, *lat, *lon, "");
    }
    for (id, refs) in [(200, [20, 21, 22]), (201, [20, 23, 22])] {
        xml += &format!("<way id='{id}' version='1' timestamp='2026-01-01T00:00:00Z'>");
        for r in refs {
            xml += &format!("<nd ref='{r}'/>");
        }
        xml += "</way>\n";
    }
    xml += "<relation id='300' version='1' timestamp='2026-01-01T00:00:00Z'>\
            <member type='way' ref='200' role='outer'/><member type='way' ref='201' role='outer'/>\
            <tag k='type' v='multipolygon'/><tag k='amenity' v='hospital'/></relation>\n";
    xml
}

/// Writes `xml` to `dir`, converts it to a PBF extract with osmium and compiles that with
/// `vicinity places compile --osm`: the policy's path.
fn compile_an_osm_extract(dir: &std::path::Path, xml: String) -> PathBuf {
    let (source, pbf, policy) = (
        dir.join("extract.osm"),
        dir.join("extract.osm.pbf"),
        dir.join("places.policy"),
    );
    fs::write(&source, xml).unwrap();
    let converted = Command::new("osmium")
        .arg("cat")
        .arg(&source)
        .arg("-o")
        .arg(&pbf)
        .arg("--overwrite")
        .output()
        .expect("osmium-tool (scripts/test installs it)");
    assert!(converted.status.success(), "{converted:?}");
    let compiled = vicinity()
        .args(["places", "compile", "--osm"])
        .arg(&pbf)
        .arg("--out")
        .arg(&policy)
        .output()
        .expect("runs");
    assert!(compiled.status.success(), "{compiled:?}");
    policy
}
