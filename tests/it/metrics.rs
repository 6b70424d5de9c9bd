//! `--metrics-listen` (contract §4.7): after a scripted sequence of calls, every metric
//! family exists with its type and moved as the calls say (a refused consent, a rate-limit
//! refusal, a shake without a partner, an entry purged at its deadline with its lag), on both
//! backends; `promtool check metrics` accepts the page; no label carries a user id.

use std::time::{Duration, Instant};

use tonic::{Code, Request};
use vicinity::{
    domain::limits::Rate,
    grpc::pb::{self, Feature, Gender},
};

use crate::{
    details::assert_reason,
    helpers::{Backend, TestApp, on_both_backends, retention},
    places::{HOME, Point},
};

/// The sum of the samples of `name` whose labels include every one of `labels`.
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// The type `page` declares for `name`.
fn declared_type<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("# TYPE {name} ");
    page.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
}

/// Every family the issue asks for, with its type.
const FAMILIES: [(&str, &str); 24] = [
    ("vicinity_rpc_requests_total", "counter"),
    ("vicinity_rpc_duration_seconds", "histogram"),
    ("vicinity_consent_refusals_total", "counter"),
    ("vicinity_rate_limit_refusals_total", "counter"),
    ("vicinity_implausible_jumps_total", "counter"),
    ("vicinity_shake_outcomes_total", "counter"),
    ("vicinity_shakes_waiting", "gauge"),
    ("vicinity_sweeps_total", "counter"),
    ("vicinity_sweep_duration_seconds", "histogram"),
    ("vicinity_sweep_last_success_timestamp_seconds", "gauge"),
    ("vicinity_purged_entries_total", "counter"),
    ("vicinity_purge_lag_seconds", "histogram"),
    ("vicinity_oldest_overdue_entry_age_seconds", "gauge"),
    ("vicinity_owed_purges_stuck", "gauge"),
    ("vicinity_ready", "gauge"),
    ("vicinity_build_info", "gauge"),
    ("vicinity_config_retention_seconds", "gauge"),
    ("vicinity_config_sweep_interval_seconds", "gauge"),
    ("vicinity_connections_open", "gauge"),
    ("vicinity_connections_max", "gauge"),
    ("vicinity_connections_refused_total", "counter"),
    // Redis only (the embedded store makes no round trips):
    ("vicinity_store_call_duration_seconds", "histogram"),
    ("vicinity_store_call_errors_total", "counter"),
    ("vicinity_consent_cache_reads_total", "counter"),
];

async fn shake_alone(app: &TestApp, user: &str, at: Point) -> pb::shake_response::Result {
    let request = Request::new(pb::ShakeRequest {
        user_id: user.to_owned(),
        location: Some(crate::calls::location(at)),
    });
    let reply = app.client.shake().shake(request).await.expect("shake");
    reply.into_inner().result.expect("a result")
}

async fn metrics_follow_a_scripted_sequence(backend: Backend) {
    let app = TestApp::spawn(backend, |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.retention = retention(Duration::from_secs(2));
        config.shake_window = Duration::from_millis(200);
        config.policy.updates = "1/1m".parse::<Rate>().unwrap();
    })
    .await;
    let before = app.scrape().await;

    make_the_scripted_calls(&app).await;
    let after = wait_until_a_deadline_purge_is_counted(&app).await;

    assert_every_family_is_declared_with_its_type(&after, backend);
    assert_the_calls_moved_their_counters(&before, &after, backend);
    assert_the_sweeps_and_settings_are_reported(&before, &after, backend);
    for user in ["alice", "bob", "mallory"] {
        assert!(!after.contains(user), "a user id in a label:\n{after}");
    }
    promtool_accepts(&after);
}

/// The calls of `method` answered with `code` on `page`.
fn requests_answered(page: &str, method: &str, code: &str) -> f64 {
    let method = format!("vicinity.v1.{method}");
    sample(
        page,
        "vicinity_rpc_requests_total",
        &[("method", &method), ("code", code)],
    )
}

/// How far the samples of `name` with `labels` moved from `before` to `after`.
fn moved_between(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(after, name, labels) - sample(before, name, labels)
}

/// Alice joins and lists, mallory is refused for consent, alice is refused a second update,
/// and bob shakes alone.
async fn make_the_scripted_calls(app: &TestApp) {
    app.join("alice", HOME, Gender::Female).await;
    app.list("alice").await.expect("alice lists");
    let refused = app.list("mallory").await;
    assert_reason(refused, Code::FailedPrecondition, "CONSENT_REQUIRED");
    let again = app.update("alice", HOME, Gender::Female).await;
    assert_reason(again, Code::ResourceExhausted, "RATE_LIMITED");
    app.grant("bob", Feature::Shake).await.expect("grant");
    let alone = shake_alone(app, "bob", HOME).await;
    assert!(matches!(alone, pb::shake_response::Result::NoMatch(_)));
}

/// Moves alice's entry past its deadline and scrapes until its purge and lag are counted.
async fn wait_until_a_deadline_purge_is_counted(app: &TestApp) -> String {
    // Alice's entry reaches its deadline: 2 s of the store's time (Redis keeps real time).
    app.advance(Duration::from_secs(3));
    let waited = Instant::now();
    loop {
        let page = app.scrape().await;
        let purged = sample(
            &page,
            "vicinity_purged_entries_total",
            &[("cause", "deadline")],
        );
        if purged >= 1.0 && sample(&page, "vicinity_purge_lag_seconds_count", &[]) >= 1.0 {
            break page;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "no purge counted:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every family of `FAMILIES` the backend serves is declared on `after` with its type.
fn assert_every_family_is_declared_with_its_type(after: &str, backend: Backend) {
    for (name, kind) in FAMILIES {
        let on_redis_only =
            name.starts_with("vicinity_store_call") || name == "vicinity_consent_cache_reads_total";
        if on_redis_only && backend == Backend::Memory {
            continue;
        }
        if name == "vicinity_store_call_errors_total" {
            // No store call failed: the family is declared by the first error only.
            continue;
        }
        assert_eq!(declared_type(after, name), Some(kind), "{name}:\n{after}");
    }
}

/// The consent read, the update, the refusals and the shake each moved their counters once.
fn assert_the_calls_moved_their_counters(before: &str, after: &str, backend: Backend) {
    let moved = |name: &str, labels: &[(&str, &str)]| moved_between(before, after, name, labels);
    if backend == Backend::Redis {
        // Alice's checks, each from the cache or around it: her two updates' (the second then
        // refused by its rate) and her own when she listed.
        let consent_reads: f64 = ["hit", "miss", "bypassed"]
            .iter()
            .map(|o| moved("vicinity_consent_cache_reads_total", &[("outcome", o)]))
            .sum();
        assert_eq!(consent_reads, 3.0, "{after}");
    }
    assert_eq!(
        requests_answered(after, "PeopleNearby/UpdateLocation", "OK")
            - requests_answered(before, "PeopleNearby/UpdateLocation", "OK"),
        1.0
    );
    assert_eq!(
        moved(
            "vicinity_rpc_requests_total",
            &[
                ("method", "vicinity.v1.PeopleNearby/UpdateLocation"),
                ("code", "RESOURCE_EXHAUSTED")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "vicinity_rpc_requests_total",
            &[
                ("method", "vicinity.v1.PeopleNearby/ListNearby"),
                ("code", "FAILED_PRECONDITION")
            ]
        ),
        1.0
    );
    assert_the_refusals_and_the_shake_moved_once(before, after);
}

/// The consent refusal, the rate-limit refusal and the lone shake each counted once.
fn assert_the_refusals_and_the_shake_moved_once(before: &str, after: &str) {
    let moved = |name: &str, labels: &[(&str, &str)]| moved_between(before, after, name, labels);
    assert_eq!(
        moved(
            "vicinity_consent_refusals_total",
            &[("feature", "people_nearby")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "vicinity_rate_limit_refusals_total",
            &[("limit", "updates")]
        ),
        1.0
    );
    assert_eq!(
        moved("vicinity_shake_outcomes_total", &[("outcome", "no_match")]),
        1.0
    );
}

/// Durations, sweeps, readiness, settings, overdue age, purge lag and store calls are reported.
fn assert_the_sweeps_and_settings_are_reported(before: &str, after: &str, backend: Backend) {
    let moved = |name: &str, labels: &[(&str, &str)]| moved_between(before, after, name, labels);
    assert!(
        moved(
            "vicinity_rpc_duration_seconds_count",
            &[("method", "vicinity.v1.PeopleNearby/ListNearby")]
        ) >= 2.0
    );
    assert!(moved("vicinity_sweeps_total", &[("result", "ok")]) >= 1.0);
    assert!(sample(after, "vicinity_sweep_last_success_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(sample(after, "vicinity_ready", &[]), 1.0);
    assert_eq!(sample(after, "vicinity_owed_purges_stuck", &[]), 0.0);
    // The settings nodes must share: the test's retention of 2 s.
    assert_eq!(sample(after, "vicinity_config_retention_seconds", &[]), 2.0);
    assert_eq!(sample(after, "vicinity_build_info", &[]), 1.0);
    assert_nothing_is_overdue_and_the_purge_was_timely(after, backend);
    if backend == Backend::Redis {
        let calls = sample(
            after,
            "vicinity_store_call_duration_seconds_count",
            &[("store", "locations")],
        );
        assert!(calls >= 1.0, "{after}");
    }
}

/// The oldest overdue entry is within the sweep's cadence and the purge lag within 5 s.
fn assert_nothing_is_overdue_and_the_purge_was_timely(after: &str, backend: Backend) {
    // Nothing is overdue beyond the sweep's own cadence: 0 on the embedded store (its purge
    // task runs at each deadline); on Redis the schedule's head may be due for up to the sweep
    // interval plus a second (whole-second deadlines) between passes.
    let overdue = sample(after, "vicinity_oldest_overdue_entry_age_seconds", &[]);
    let bound = match backend {
        Backend::Memory => 0.0,
        Backend::Redis => {
            (crate::helpers::REDIS_SWEEP_INTERVAL + Duration::from_secs(1)).as_secs_f64()
        }
    };
    assert!((0.0..=bound).contains(&overdue), "overdue {overdue} s");
    // Purged at its deadline, not later than the sweep's bound (5 s) after it.
    let lag = sample(after, "vicinity_purge_lag_seconds_sum", &[]);
    assert!((0.0..5.0).contains(&lag), "lag {lag}");
}

/// `promtool check metrics` (Debian's `prometheus` package, which `scripts/test` installs).
pub fn promtool_accepts(page: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on the PATH (scripts/test installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

on_both_backends!(metrics_follow_a_scripted_sequence);

/// Sockets that open and dribble from one peer (127.0.0.2) take at most
/// that peer's few places on the metrics listener; scrapes and probes from another
/// (127.0.0.1) are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbling_sockets_of_one_peer_do_not_blind_the_metrics_listener() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(Backend::Memory, |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = app.metrics_addr().expect("metrics served");
    let mut dribblers = Vec::new();
    for _ in 0..48 {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.2:0".parse().unwrap())
            .expect("bind 127.0.0.2");
        let mut stream = socket.connect(addr).await.expect("connect");
        // Half a request line: the server waits for the rest.
        let _ = stream.write_all(b"GET /metr").await;
        dribblers.push(stream);
    }
    for _ in 0..8 {
        let page = app.scrape().await;
        assert!(page.contains("vicinity_ready"), "{page}");
    }
    let (status, _) = crate::helpers::http_get(addr, "/livez")
        .await
        .expect("an answer");
    assert!(status.contains(" 200"), "{status}");
}
