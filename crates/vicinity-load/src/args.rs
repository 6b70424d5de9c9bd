//! The flags of `vicinity load`, each also read from `VICINITY_<FLAG>`.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use vicinity_api::client::{ClientError, ClientTls};

use super::{
    cpu::Watched,
    workload::{Viewers, Workload},
};

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 250ms, 3s, 1h)"))
}

/// A comparison slice: at least 100 ms (a shorter one measures the switching, not the sides).
fn slice(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d >= Duration::from_millis(100) => Ok(d),
        _ => Err("a slice is at least 100ms".into()),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive rate per second")),
    }
}

/// How a client reaches an `https://` server (the operator commands and `vicinity load`).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) that signed the server's certificate: needed for https://.
    #[arg(long, env = "VICINITY_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for a server that requires mutual TLS.
    #[arg(long, env = "VICINITY_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "VICINITY_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS settings the flags give (`None`: plaintext).
    pub fn load(&self) -> Result<Option<ClientTls>, ClientError> {
        let Some(ca) = &self.ca_cert else {
            if self.client_cert.is_some() {
                return Err(ClientError::Tls("--client-cert needs --ca-cert"));
            }
            return Ok(None);
        };
        let identity = self.client_cert.as_deref().zip(self.client_key.as_deref());
        ClientTls::from_files(ca, identity).map(Some)
    }
}

/// The flags of `vicinity load` (contract §8).
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The service to drive.
    #[arg(long, env = "VICINITY_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// API key (app scope).
    #[arg(long, env = "VICINITY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// TLS to an https:// service.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The workload (contract §6): w1 city, w2 hotspot, w3 churn, w4 shake storm.
    #[arg(long, env = "VICINITY_WORKLOAD", value_enum, default_value_t = Workload::W1)]
    pub workload: Workload,
    /// Users spread over the city box (at least 1).
    #[arg(long, env = "VICINITY_USERS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub users: u64,
    /// Extra users within 1 km of the stadium (default: a tenth of --users for w2, else 0).
    #[arg(long, env = "VICINITY_HOTSPOT_USERS")]
    pub hotspot_users: Option<u64>,
    /// Seed of positions, genders and request choices.
    #[arg(long, env = "VICINITY_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Who asks for lists: any user, or only the hotspot crowd (w2).
    #[arg(long, env = "VICINITY_VIEWERS", value_enum, default_value_t)]
    pub viewers: Viewers,
    /// Do not load the population (an earlier run with the same flags did, within retention).
    #[arg(long, env = "VICINITY_SKIP_LOAD")]
    pub skip_load: bool,
    /// Users loaded at once.
    #[arg(long, env = "VICINITY_LOAD_CONCURRENCY", default_value_t = 256)]
    pub load_concurrency: usize,
    /// Open loop at this many requests per second (the default mode, 1000/s).
    #[arg(long, env = "VICINITY_RATE", value_parser = positive_rate,
          conflicts_with_all = ["sweep", "find_peak", "closed"])]
    pub rate: Option<f64>,
    /// Open loop at each of these rates in turn (`1000,2000,4000`); reports the best that
    /// held the rate with p99 within --p99-bound.
    #[arg(long, env = "VICINITY_SWEEP", value_delimiter = ',', value_parser = positive_rate,
          conflicts_with_all = ["find_peak", "closed"])]
    pub sweep: Vec<f64>,
    /// Search the highest rate held with p99 within --p99-bound; also measures latency at
    /// concurrency 1 and p99 at half the peak.
    #[arg(long, env = "VICINITY_FIND_PEAK", conflicts_with = "closed")]
    pub find_peak: bool,
    /// Closed loop with this many callers, each sending when its previous call answered.
    #[arg(long, env = "VICINITY_CLOSED")]
    pub closed: Option<usize>,
    /// Length of each run.
    #[arg(long, env = "VICINITY_DURATION", default_value = "30s", value_parser = duration)]
    pub duration: Duration,
    /// Requests outstanding at most; when all are taken the schedule waits (and the wait
    /// counts as latency).
    #[arg(long, env = "VICINITY_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// HTTP/2 connections to the service (and Redis connections to the peer).
    #[arg(long, env = "VICINITY_CONNECTIONS", default_value_t = 2)]
    pub connections: usize,
    /// The harness's runtime threads. One keeps the harness's share of a small machine low
    /// (it shares the cores with what it measures); raise it where one core cannot send the
    /// rates wanted (`--watch` prints the harness's CPU per request).
    #[arg(long, env = "VICINITY_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Deadline of each call.
    #[arg(long, env = "VICINITY_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub timeout: Duration,
    /// The p99 a rate must keep to count as held (sweep, peak search).
    #[arg(long, env = "VICINITY_P99_BOUND", default_value = "10ms", value_parser = duration)]
    pub p99_bound: Duration,
    /// Also load the users into Redis GEO in this Redis (a separate key) and find the peaks
    /// of GEOSEARCH at 1 km and 500 m beside the service's (contract §7).
    #[arg(long, env = "VICINITY_PEER_REDIS_URL")]
    pub peer_redis_url: Option<String>,
    /// With --peer-redis-url: the length of each slice of the interleaved comparison (the
    /// service and each peer search in turn, slice after slice, so the machine's drift hits
    /// all sides alike).
    #[arg(long, env = "VICINITY_SLICE", default_value = "5s", value_parser = slice)]
    pub slice: Duration,
    /// With --peer-redis-url: before the interleaved rounds, each side first runs this long,
    /// in no ratio, so the rounds
    /// compare warm processes (a node's consent cache filled, Redis's pages touched, as in a
    /// node that has served a while); the warm-up's figures are still printed and reported.
    #[arg(long, env = "VICINITY_WARM_UP", default_value = "0s", value_parser = duration)]
    pub warm_up: Duration,
    /// Write the JSON report here.
    #[arg(long, env = "VICINITY_JSON")]
    pub json: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long, env = "VICINITY_SVG")]
    pub svg: Option<PathBuf>,
    /// Report the CPU time of this process per run (`serve=PID`, `redis=PID`; Linux); the
    /// harness's own is always reported.
    #[arg(long, env = "VICINITY_WATCH", value_delimiter = ',', value_parser = Watched::parse)]
    pub watch: Vec<Watched>,
    /// A note for the report and the chart's title (a commit, a machine).
    #[arg(long, env = "VICINITY_LABEL")]
    pub label: Option<String>,
    /// No progress line and no per-run output; the summary only.
    #[arg(long, env = "VICINITY_QUIET")]
    pub quiet: bool,
}

/// What to run, from the mode flags.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// One open-loop run.
    Rate(f64),
    /// Open-loop runs at each rate.
    Sweep(Vec<f64>),
    /// The peak search.
    FindPeak,
    /// One closed-loop run.
    Closed(usize),
}

impl LoadArgs {
    /// The mode the flags select (one open-loop run at 1000/s when none is given).
    pub fn mode(&self) -> Mode {
        match (
            self.rate,
            self.sweep.is_empty(),
            self.find_peak,
            self.closed,
        ) {
            (_, _, true, _) => Mode::FindPeak,
            (_, false, _, _) => Mode::Sweep(self.sweep.clone()),
            (_, _, _, Some(n)) => Mode::Closed(n.max(1)),
            (Some(rate), ..) => Mode::Rate(rate),
            (None, ..) => Mode::Rate(1_000.0),
        }
    }

    /// The crowd size: the flag, else a tenth of the users for w2, else none.
    pub fn hotspot(&self) -> u64 {
        match (self.hotspot_users, self.workload) {
            (Some(n), _) => n,
            (None, Workload::W2) => self.users / 10,
            (None, _) => 0,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    /// `vicinity load ARGS` as the binary parses them (the crate's tests share it).
    pub(crate) fn parse(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied())).map(|c| c.load)
    }

    #[test]
    fn flags_select_one_mode() {
        assert_eq!(parse(&[]).unwrap().mode(), Mode::Rate(1_000.0));
        assert_eq!(parse(&["--rate", "250"]).unwrap().mode(), Mode::Rate(250.0));
        let sweep = parse(&["--sweep", "1000,2000"]).unwrap().mode();
        assert_eq!(sweep, Mode::Sweep(vec![1_000.0, 2_000.0]));
        assert_eq!(parse(&["--find-peak"]).unwrap().mode(), Mode::FindPeak);
        assert_eq!(parse(&["--closed", "1"]).unwrap().mode(), Mode::Closed(1));
        assert!(parse(&["--rate", "1", "--find-peak"]).is_err());
        assert!(parse(&["--rate", "-3"]).is_err());
    }

    #[test]
    fn durations_and_workloads_parse() {
        let args = parse(&["--duration", "250ms", "--workload", "w2", "--users", "1000"]).unwrap();
        assert_eq!(args.duration, Duration::from_millis(250));
        assert_eq!((args.workload, args.hotspot()), (Workload::W2, 100));
        assert!(parse(&["--duration", "soon"]).is_err());
        assert_eq!(parse(&["--hotspot-users", "7"]).unwrap().hotspot(), 7);
        assert!(
            parse(&["--users", "0"]).is_err(),
            "no users, nothing to measure"
        );
    }

    #[test]
    fn the_harness_runs_on_one_thread_unless_told_otherwise() {
        assert_eq!(parse(&[]).unwrap().threads, 1);
        assert_eq!(parse(&["--threads", "4"]).unwrap().threads, 4);
        assert!(
            parse(&["--threads", "0"]).is_err(),
            "a runtime needs a thread"
        );
    }

    #[test]
    fn a_comparison_slice_is_at_least_a_tenth_of_a_second() {
        assert!(parse(&["--slice", "1ms"]).is_err());
        let args = parse(&["--slice", "100ms"]).unwrap();
        assert_eq!(args.slice, Duration::from_millis(100));
    }
}
