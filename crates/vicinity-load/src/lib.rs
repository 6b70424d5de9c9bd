//! `vicinity load`: the load-test harness of contract §8 (the crate `vicinity-load`; the
//! `vicinity` binary runs it as its `load` subcommand).
//!
//! It loads a seeded population (contract §6) through the gRPC API, then drives the service
//! open-loop at a rate, measuring each request from its intended send time (no coordinated
//! omission), and reports HDR percentiles per RPC, throughput, errors by status code, JSON and
//! an SVG chart. With `--peer-redis-url` it also loads the same users into Redis GEO and finds
//! the peaks of `GEOSEARCH` beside the service's, for the ratios contract §7 asks for.
//!
//! # Layout
//!
//! - [`args`]: the flags.
//! - [`workload`]: seeded users and request choices (pure).
//! - [`driver`]: open- and closed-loop pacing over a [`driver::Target`].
//! - [`record`]: latency accounting from intended send times; percentiles.
//! - [`report`]: run summaries, verdicts, JSON and text.
//! - [`svg`]: the chart.
//! - [`peak`]: fixed rate, sweep and peak search over one target.
//! - [`service`]: the service's RPCs as targets; [`peer`]: Redis GEO as targets.
//! - [`progress`]: the stderr progress line; [`cpu`]: CPU time of watched processes.

pub mod args;
pub mod cpu;
pub mod driver;
pub mod peak;
pub mod peer;
pub mod progress;
pub mod record;
pub mod report;
pub mod service;
pub mod svg;
pub mod workload;

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde_json::json;

pub use args::{LoadArgs, Mode};

use self::{
    driver::{Pace, RunSpec, Target, drive},
    peak::{Session, Settings},
    peer::{ConsentGeo, Geo, GeoAdd, GeoSearch},
    report::{Criteria, Meta, Report, Role, RunReport},
    service::{Churn, ListNearby, Populate, Service, Shake},
    workload::{Population, Workload, mix},
};
use vicinity_api::{client::ClientError, pb};

/// The longest loading may take.
const LOAD_BOUND: Duration = Duration::from_secs(3_600);
/// Loading fails when more than this share of users could not be loaded.
const LOAD_MAX_FAILED: f64 = 0.01;
/// The most rounds of an interleaved comparison (each keeps one run report per side).
const MAX_ROUNDS: u32 = 1_000;
/// GEOADD batches in flight while loading the peer.
const PEER_LOAD_CONCURRENCY: usize = 4;

/// Why the harness stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The service cannot be reached.
    #[error("cannot reach the service: {0}")]
    Connect(#[from] ClientError),
    /// The service answered a probe with an error.
    #[error("the service: {0}")]
    Service(#[from] tonic::Status),
    /// The peer Redis failed.
    #[error("the peer Redis: {0}")]
    Peer(#[from] redis::RedisError),
    /// The flags ask for something the harness does not do.
    #[error("{0}")]
    Usage(&'static str),
    /// Too many users could not be loaded.
    #[error("loading failed for {failed} of {total} users ({errors}); is the service healthy?")]
    Populate {
        /// Users not loaded.
        failed: u64,
        /// Users tried.
        total: u64,
        /// Failures by label.
        errors: String,
    },
    /// The run finished, but a verdict asked for failed (the summary and files were written).
    #[error("{}", .0.join("; "))]
    Verdict(Vec<String>),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the harness as the flags say, prints the results and writes the files asked for.
pub async fn main(args: &LoadArgs) -> Result<(), LoadError> {
    let created = writable_outputs(args)?;
    let report = match run(args).await {
        Ok(report) => report,
        Err(error) => {
            // No empty report left behind by a run that produced none.
            for path in created {
                let _ = std::fs::remove_file(path);
            }
            return Err(error);
        }
    };
    match args.quiet {
        true => print!("{}", report.text()),
        false if !report.peaks.is_empty() => print!("{}", report.peak_table()),
        false => {}
    }
    if !args.quiet {
        print!("{}{}", report.slice_text(), report.failure_text());
    }
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|source| LoadError::Write {
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).expect("JSON values print");
        write(path, text + "\n")?;
    }
    if let Some(path) = &args.svg {
        write(path, svg::render(&report, &title(args)))?;
    }
    let failed = report.verdict_failures();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Verdict(failed))
    }
}

/// Fails before the run, not after it, when `--json` or `--svg` names a file that cannot be
/// written (a missing directory, no permission): opened for appending, it is created if
/// missing and left as it is otherwise, until the run writes it. Returns the files it
/// created (removed again if the run fails).
fn writable_outputs(args: &LoadArgs) -> Result<Vec<PathBuf>, LoadError> {
    let mut created = Vec::new();
    for path in [&args.json, &args.svg].into_iter().flatten() {
        let existed = path.exists();
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        opened.map_err(|source| LoadError::Write {
            path: path.clone(),
            source,
        })?;
        if !existed {
            created.push(path.clone());
        }
    }
    Ok(created)
}

/// Loads, runs and reports, without printing the summary or writing files.
pub async fn run(args: &LoadArgs) -> Result<Report, LoadError> {
    let population = Population {
        seed: args.seed,
        city: args.users,
        hotspot: args.hotspot(),
    };
    if args.peer_redis_url.is_some() && !matches!(args.workload, Workload::W1 | Workload::W2) {
        return Err(LoadError::Usage(
            "--peer-redis-url compares ListNearby with GEOSEARCH: use --workload w1 or w2",
        ));
    }
    let tls = args.tls.load()?;
    let service = Service::connect(
        &args.addr,
        args.api_key.as_deref(),
        tls.as_ref(),
        args.connections,
        population,
        args.timeout,
    )
    .await?;
    let mut session = Session::new(settings(args));
    let mut loads = Vec::new();
    let mut failures = Vec::new();
    if !args.skip_load {
        loads.push(populate(&service, args, &session.settings).await?);
    }
    // The peer is a comparison: when it fails, the service's own figures still stand, so the
    // failure is reported beside them and the run goes on.
    let peer = match &args.peer_redis_url {
        Some(url) => match connect_peer(url, args, population, &session.settings).await {
            Ok((geo, load)) => {
                loads.push(load);
                Some(geo)
            }
            Err(error) => {
                failures.push(("loading the peer".to_owned(), error.to_string()));
                None
            }
        },
        None => None,
    };
    let salt = mix(args.seed, 99, 0);
    let main = workload_target(args, service, salt);
    let searches = peer_searches(peer.as_ref(), args, salt);
    measure(&mut session, args, &main, &searches).await;
    if let Some(geo) = peer
        && let Err(error) = geo.remove().await
    {
        failures.push(("removing the peer's key".to_owned(), error.to_string()));
    }
    Ok(Report {
        meta: meta(args, &args.mode()),
        loads,
        runs: session.runs,
        peaks: session.peaks,
        p99_bound_us: args.p99_bound.as_micros() as u64,
        failures,
    })
}

/// The peer's searches, taken in turns with the service's: the consent-aware design, and
/// GEOSEARCH at 1 km and at 500 m.
fn peer_searches(peer: Option<&Geo>, args: &LoadArgs, salt: u64) -> Vec<(String, Arc<dyn Target>)> {
    peer.into_iter()
        .flat_map(|geo| {
            let consent = ConsentGeo {
                geo: geo.clone(),
                viewers: args.viewers,
                salt,
            };
            let consent = (consent.name(), Arc::new(consent) as Arc<dyn Target>);
            let radii = [1_000, 500].map(|radius_m| {
                let search = GeoSearch {
                    geo: geo.clone(),
                    radius_m,
                    viewers: args.viewers,
                    salt,
                };
                (search.name(), Arc::new(search) as Arc<dyn Target>)
            });
            std::iter::once(consent).chain(radii)
        })
        .collect()
}

/// Runs the service's workload and the peer's `searches` (none without a peer) as `args`
/// say, into `session`.
async fn measure(
    session: &mut Session,
    args: &LoadArgs,
    main: &Arc<dyn Target>,
    searches: &[(String, Arc<dyn Target>)],
) {
    let mode = args.mode();
    let rounds = |at_least: u32| {
        let n = args.duration.as_secs_f64() / args.slice.as_secs_f64().max(0.001);
        (n.floor() as u32).clamp(at_least, MAX_ROUNDS)
    };
    match (&mode, searches.is_empty()) {
        // One run per side would measure the machine's drift as much as the software: the
        // sides take turns, a slice each, and each round gives one ratio.
        (Mode::Rate(_) | Mode::Closed(_), false) => {
            let pace = match mode {
                Mode::Closed(concurrency) => Pace::Closed { concurrency },
                Mode::Rate(rate) => Pace::Open { rate },
                _ => unreachable!("matched above"),
            };
            let turns = Turns::of(args, pace, rounds(1));
            interleave(session, main, searches, turns).await;
        }
        _ => {
            run_mode(session, main, "service", &mode).await;
            for (name, search) in searches {
                run_mode(session, search, name, &mode).await;
            }
            if !searches.is_empty() {
                // The peaks are searched side by side; their saturation is compared again
                // in turns, for a ratio with its spread.
                let concurrency = args.max_in_flight.clamp(1, peak::PROBE_CONCURRENCY);
                let pace = Pace::Closed { concurrency };
                let turns = Turns::of(args, pace, rounds(3));
                interleave(session, main, searches, turns).await;
            }
        }
    }
}

async fn connect_peer(
    url: &str,
    args: &LoadArgs,
    population: Population,
    settings: &Settings,
) -> Result<(Geo, RunReport), LoadError> {
    let geo = Geo::connect(url, args.connections, population, args.timeout).await?;
    match load_peer(&geo, settings).await {
        Ok(load) => Ok((geo, load)),
        Err(error) => {
            // Best effort: a half-loaded key should not outlive the run.
            let _ = geo.remove().await;
            Err(error)
        }
    }
}

fn settings(args: &LoadArgs) -> Settings {
    Settings {
        duration: args.duration,
        max_in_flight: args.max_in_flight.max(1),
        grace: Duration::from_secs(1),
        drain: args.timeout + Duration::from_secs(2),
        criteria: Criteria::with_bound(args.p99_bound),
        verbose: !args.quiet,
        watched: std::iter::once(cpu::Watched::harness())
            .chain(args.watch.iter().cloned())
            .collect(),
    }
}

fn workload_target(args: &LoadArgs, service: Service, salt: u64) -> Arc<dyn Target> {
    match args.workload {
        Workload::W1 | Workload::W2 => Arc::new(ListNearby {
            service,
            viewers: args.viewers,
            salt,
        }),
        Workload::W3 => Arc::new(Churn { service, salt }),
        Workload::W4 => Arc::new(Shake { service, salt }),
    }
}

/// How the sides of a comparison take turns.
#[derive(Debug, Clone, Copy)]
struct Turns {
    pace: Pace,
    /// Each side's run before the rounds (`--warm-up`; zero: none).
    warm_up: Duration,
    slice: Duration,
    rounds: u32,
}

impl Turns {
    fn of(args: &LoadArgs, pace: Pace, rounds: u32) -> Self {
        Self {
            pace,
            warm_up: args.warm_up,
            slice: args.slice,
            rounds,
        }
    }
}

/// Each side once for the warm-up, then `rounds` rounds of: the service for `slice`, then
/// each peer search for `slice`.
async fn interleave(
    session: &mut Session,
    main: &Arc<dyn Target>,
    searches: &[(String, Arc<dyn Target>)],
    turns: Turns,
) {
    if !turns.warm_up.is_zero() {
        let (pace, warm_up) = (turns.pace, turns.warm_up);
        each_side(session, main, searches, Role::WarmUp, pace, warm_up).await;
    }
    for _ in 0..turns.rounds {
        each_side(
            session,
            main,
            searches,
            Role::Slice,
            turns.pace,
            turns.slice,
        )
        .await;
    }
}

/// The service, then each peer search, once for `duration` each, as `role`.
async fn each_side(
    session: &mut Session,
    main: &Arc<dyn Target>,
    searches: &[(String, Arc<dyn Target>)],
    role: Role,
    pace: Pace,
    duration: Duration,
) {
    session.run(main, "service", role, pace, duration).await;
    for (name, search) in searches {
        session.run(search, name, role, pace, duration).await;
    }
}

async fn run_mode(session: &mut Session, target: &Arc<dyn Target>, name: &str, mode: &Mode) {
    let duration = session.settings.duration;
    match mode {
        Mode::Rate(rate) => {
            let pace = Pace::Open { rate: *rate };
            session.run(target, name, Role::Fixed, pace, duration).await;
        }
        Mode::Closed(concurrency) => {
            let pace = Pace::Closed {
                concurrency: *concurrency,
            };
            session.run(target, name, Role::Fixed, pace, duration).await;
        }
        Mode::Sweep(rates) => drop(session.sweep(target, name, rates).await),
        Mode::FindPeak => drop(session.find_peak(target, name).await),
    }
}

/// Consent (and for People Nearby a position) for every user, many at once.
async fn populate(
    service: &Service,
    args: &LoadArgs,
    settings: &Settings,
) -> Result<RunReport, LoadError> {
    let feature = match args.workload {
        Workload::W4 => pb::Feature::Shake,
        _ => pb::Feature::PeopleNearby,
    };
    let target = Populate {
        service: service.clone(),
        feature,
    };
    let total = service.population().len();
    let concurrency = args.load_concurrency.max(1);
    let report = load(Arc::new(target), total, concurrency, "load users", settings).await;
    let failed = report.completed - report.ok + report.unsent + report.unfinished;
    if failed as f64 > LOAD_MAX_FAILED * total as f64 {
        let errors = format!("{:?}", report.errors);
        return Err(LoadError::Populate {
            failed,
            total,
            errors,
        });
    }
    Ok(report)
}

/// The population into the peer's GEO key, after clearing it.
async fn load_peer(geo: &Geo, settings: &Settings) -> Result<RunReport, LoadError> {
    geo.remove().await?;
    let batches = geo.batches();
    let target = Arc::new(GeoAdd(geo.clone()));
    let report = load(target, batches, PEER_LOAD_CONCURRENCY, "load GEO", settings).await;
    let members = geo.members().await?;
    if report.ok != batches {
        return Err(LoadError::Populate {
            failed: batches - report.ok,
            total: batches,
            errors: format!("GEOADD batches: {:?}", report.errors),
        });
    }
    if settings.verbose {
        println!("peer: {members} members in the GEO key\n");
    }
    Ok(report)
}

/// Requests `0..count` of `target`, `concurrency` at a time, bounded by [`LOAD_BOUND`].
async fn load(
    target: Arc<dyn Target>,
    count: u64,
    concurrency: usize,
    label: &str,
    settings: &Settings,
) -> RunReport {
    let pace = Pace::Closed { concurrency };
    let spec = RunSpec {
        pace,
        duration: LOAD_BOUND,
        max_in_flight: concurrency,
        grace: settings.grace,
        drain: settings.drain,
        limit: Some(count),
    };
    let rpc = target.primary();
    let before = cpu::Snapshot::take(&settings.watched);
    let outcome = drive(target, &spec, label, settings.verbose).await;
    let criteria = &settings.criteria;
    let mut report = RunReport::new(
        label,
        Role::Load,
        pace,
        Duration::ZERO,
        &outcome,
        rpc,
        criteria,
    );
    report.cpu = cpu::Snapshot::take(&settings.watched).since(&before);
    if settings.verbose {
        println!("{}", report::run_text(&report));
    }
    report
}

fn meta(args: &LoadArgs, mode: &Mode) -> Meta {
    let mode = match mode {
        Mode::Rate(rate) => json!({ "rate": rate }),
        Mode::Sweep(rates) => json!({ "sweep": rates }),
        Mode::FindPeak => json!("find-peak"),
        Mode::Closed(n) => json!({ "closed": n }),
    };
    Meta {
        harness: concat!("vicinity ", env!("CARGO_PKG_VERSION")).to_owned(),
        label: args.label.clone(),
        addr: args.addr.clone(),
        peer: args.peer_redis_url.is_some(),
        workload: args.workload.name().to_owned(),
        users: args.users,
        hotspot_users: args.hotspot(),
        seed: args.seed,
        viewers: format!("{:?}", args.viewers).to_lowercase(),
        mode,
        duration_s: args.duration.as_secs_f64(),
        max_in_flight: args.max_in_flight,
        connections: args.connections,
        timeout_s: args.timeout.as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
    }
}

/// The chart's title.
fn title(args: &LoadArgs) -> String {
    let hotspot = match args.hotspot() {
        0 => String::new(),
        n => format!(" + {} in the hotspot", progress::short(n as f64)),
    };
    let label = args
        .label
        .as_deref()
        .map_or(String::new(), |l| format!(" — {l}"));
    format!(
        "vicinity load: {} with {} users{hotspot}, seed {}{label}",
        args.workload.name().to_uppercase(),
        progress::short(args.users as f64),
        args.seed
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `--json path` against an address nothing serves: the run cannot even start.
    fn against_nothing(json: &Path) -> LoadArgs {
        let json = json.to_str().expect("a UTF-8 path");
        args::tests::parse(&["--addr", "http://127.0.0.1:1", "--json", json]).expect("flags parse")
    }

    /// A report path that cannot be written fails the command before the
    /// run (here before it even tries the service, which nothing serves), not after it.
    #[tokio::test]
    async fn an_unwritable_report_path_fails_before_the_run() {
        let missing = std::env::temp_dir()
            .join(format!("vicinity-no-such-dir-{}", std::process::id()))
            .join("report.json");
        let error = main(&against_nothing(&missing))
            .await
            .expect_err("the path is refused");
        assert!(
            matches!(&error, LoadError::Write { path, .. } if *path == missing),
            "{error}"
        );
    }

    /// A run that fails leaves no empty report behind where there was none.
    #[tokio::test]
    async fn a_failed_run_leaves_no_report_file_it_created() {
        let path =
            std::env::temp_dir().join(format!("vicinity-report-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        main(&against_nothing(&path))
            .await
            .expect_err("nothing serves there");
        assert!(
            !path.exists(),
            "an empty report was left at {}",
            path.display()
        );
    }
}
