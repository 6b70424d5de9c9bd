//! The load harness (`vicinity-load`) against a real server on 127.0.0.1:0 with the embedded
//! store: a tiny population, one second of load, counts that add up and no errors; a peer
//! that fails; the interleaved comparison.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use tokio::{net::TcpListener, sync::oneshot};

use vicinity::{config::Config, server};
use vicinity_load::{LoadArgs, report::Role};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

/// A server on the embedded store; dropping the sender stops it.
async fn spawn_server() -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    tokio::spawn(server::run(Config::local(addr), listener, shutdown));
    (addr, stop)
}

fn args(addr: SocketAddr, flags: &[&str]) -> LoadArgs {
    let url = format!("http://{addr}");
    let base = ["load", "--addr", &url, "--users", "200", "--quiet"];
    Cli::try_parse_from(base.iter().chain(flags)).unwrap().load
}

/// Runs the harness with `flags` against a new server, bounded by `bound`.
async fn run_against_a_server(flags: &[&str], bound: Duration) -> vicinity_load::report::Report {
    let (addr, _stop) = spawn_server().await;
    tokio::time::timeout(bound, vicinity_load::run(&args(addr, flags)))
        .await
        .expect("bounded")
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_load_is_counted_exactly_and_answers_without_errors() {
    let flags = ["--rate", "200", "--duration", "1s"];
    let report = run_against_a_server(&flags, Duration::from_secs(9)).await;
    let load = &report.loads[0];
    assert_eq!((load.role, load.ok, load.completed), (Role::Load, 200, 200));
    let [run] = report.runs.as_slice() else {
        panic!("one run: {:?}", report.runs)
    };
    assert_eq!((run.planned, run.sent, run.unsent), (200, 200, 0));
    assert_eq!((run.completed, run.ok), (200, 200), "{:?}", run.errors);
    // Not `sustained`: a debug build sharing two cores with the other tests may lag, and
    // lateness is what the harness measures. The counts must add up regardless.
    assert!(run.errors.is_empty(), "{run:?}");
    assert_eq!(run.latency["ListNearby"].count, 200);
    let json = report.to_json();
    assert_eq!(json["runs"][0]["ok"], 200);
    assert_eq!(json["meta"]["users"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_updates_leave_and_come_back_without_errors() {
    let flags = ["--workload", "w3", "--rate", "400", "--duration", "1s"];
    let report = run_against_a_server(&flags, Duration::from_secs(9)).await;
    let run = &report.runs[0];
    assert_eq!((run.completed, run.ok), (400, 400), "{:?}", run.errors);
    assert!(run.latency["UpdateLocation"].count > 350);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w4_shakes_and_pairs_without_errors() {
    let flags = ["--workload", "w4", "--rate", "20", "--duration", "1s"];
    let report = run_against_a_server(&flags, Duration::from_secs(9)).await;
    let run = &report.runs[0];
    assert_eq!(report.runs.len(), 1);
    assert!(run.completed >= 10, "{run:?}");
    assert_eq!(run.ok, run.completed, "{:?}", run.errors);
    assert!(run.latency["Shake"].count >= 10, "{:?}", run.latency.keys());
}

/// A peer Redis that dies mid-run (here killed while the service is measured) ends
/// neither the run nor its report: the service's figures are kept, the peer's failed requests
/// are counted in its runs, the failed clean-up is reported as a failed step in the summary
/// and the JSON, and the verdict fails (so `vicinity load` exits non-zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_dies_mid_run_is_reported_and_the_measurements_are_kept() {
    let (addr, _stop) = spawn_server().await;
    let mut peer = vicinity_testing::redis::RedisServer::start().expect("redis-server starts");
    let url = peer.url();
    let flags = [
        "--peer-redis-url",
        &url,
        "--rate",
        "100",
        "--duration",
        "2s",
        "--slice",
        "1s",
        "--timeout",
        "300ms",
    ];
    let args = args(addr, &flags);
    let killer = async {
        // The service's first slice (the loading takes milliseconds).
        tokio::time::sleep(Duration::from_millis(500)).await;
        peer.kill().expect("killed");
    };
    let (report, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(vicinity_load::run(&args), killer)
    })
    .await
    .expect("bounded");
    let report = report.expect("the run goes on");
    let service = &report.runs[0];
    assert_eq!(service.target, "service");
    assert!(service.ok > 50, "{service:?}");
    assert_eq!(report.runs.len(), 8, "two rounds of four slices were tried");
    assert!(
        report.runs[1].ok < report.runs[1].completed,
        "the peer's errors are counted"
    );
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].0, "removing the peer's key");
    assert!(report.text().contains("FAILED: removing the peer's key"));
    assert_eq!(
        report.to_json()["failures"][0]["step"],
        "removing the peer's key"
    );
    assert!(!report.verdict_failures().is_empty());
}

/// A fixed-rate run that misses its p99 bound fails the verdict `vicinity load` was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_that_misses_its_bound_fails_the_verdict() {
    let (addr, _stop) = spawn_server().await;
    let flags = ["--rate", "50", "--duration", "1s", "--p99-bound", "1us"];
    let outcome = tokio::time::timeout(
        Duration::from_secs(9),
        vicinity_load::main(&args(addr, &flags)),
    )
    .await
    .expect("bounded");
    match outcome {
        Err(vicinity_load::LoadError::Verdict(failed)) => {
            // It says the bound failed, not the rate.
            assert!(
                failed[0].contains("the rate was held, but p99")
                    && failed[0].contains("over the bound of 0.001 ms (--p99-bound)"),
                "{failed:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// The comparison with the peer takes turns, a slice each, and reports the ratio of
/// each round with its spread beside the runs; a warm-up runs each side first, in no ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_comparison_takes_turns_and_reports_the_spread_of_its_rounds() {
    let peer = vicinity_testing::redis::RedisServer::start().expect("redis-server starts");
    let url = peer.url();
    let flags = [
        "--peer-redis-url",
        &url,
        "--closed",
        "4",
        "--duration",
        "2s",
        "--slice",
        "500ms",
        "--warm-up",
        "300ms",
    ];
    let report = run_against_a_server(&flags, Duration::from_secs(30)).await;
    let (warm, runs) = report.runs.split_at(4);
    let warmed: Vec<&str> = warm.iter().map(|r| r.target.as_str()).collect();
    assert!(warm.iter().all(|r| r.role == Role::WarmUp), "{warmed:?}");
    let order: Vec<&str> = runs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(order.len(), 16, "{order:?}");
    assert_eq!(warmed, order[..4], "{order:?}");
    assert!(runs.iter().all(|r| r.role == Role::Slice), "{order:?}");
    assert_eq!(order[0], "service", "{order:?}");
    // The consent-aware peer, at the radius that fills a page at this population's density.
    assert!(order[1].starts_with("redis-geo-consent-"), "{order:?}");
    assert_eq!(
        &order[2..4],
        ["redis-geo-1km", "redis-geo-500m"],
        "{order:?}"
    );
    assert_eq!(order[..4], order[12..], "{order:?}");
    let ratios = report.slice_ratios();
    assert_eq!(ratios.len(), 3, "{ratios:?}");
    for r in &ratios {
        assert_eq!((r.measure, r.rounds), ("throughput", 4), "{r:?}");
        assert!(
            r.min > 0.0 && r.min <= r.median && r.median <= r.max,
            "{r:?}"
        );
    }
    assert!(report.text().contains("interleaved: service"));
    assert_eq!(report.to_json()["interleaved"][0]["rounds"], 4);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // The run leaves no GEO key behind.
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let left: bool = redis::cmd("EXISTS")
        .arg(vicinity_load::peer::GEO_KEY)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(!left, "the peer's key outlived the run");
}
