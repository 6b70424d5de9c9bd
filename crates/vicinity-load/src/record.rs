//! Latency accounting. Every completion is recorded against the time its request was
//! *intended* to go out, not the time it did: when the harness or the service falls behind,
//! the wait counts (no coordinated omission). Histograms are HDR, in microseconds.

use std::{collections::BTreeMap, time::Duration, time::Instant};

use hdrhistogram::Histogram;

/// The longest latency a histogram holds; longer ones are recorded as this.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The RPC (or command) it was: `ListNearby`, `GEOSEARCH`, ...
    pub rpc: &'static str,
    /// `None` on success, else the error's label (a gRPC code name such as `UNAVAILABLE`).
    pub error: Option<String>,
}

impl Outcome {
    /// A success of `rpc`.
    pub fn ok(rpc: &'static str) -> Self {
        Outcome { rpc, error: None }
    }

    /// A failure of `rpc`, labelled.
    pub fn failed(rpc: &'static str, label: impl Into<String>) -> Self {
        Outcome {
            rpc,
            error: Some(label.into()),
        }
    }
}

/// A latency histogram in microseconds, 1 µs to [`MAX_LATENCY`], `sigfig` significant digits.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY.as_micros() as u64, sigfig)
        .expect("static histogram bounds are valid")
}

/// What one RPC did during a run.
#[derive(Debug, Clone)]
pub struct RpcStats {
    /// Every completion's latency, successes and errors alike.
    pub latency: Histogram<u64>,
    /// The same, one histogram per second of intended send time.
    pub per_second: Vec<Histogram<u64>>,
    /// Successes.
    pub ok: u64,
    /// Failures by label.
    pub errors: BTreeMap<String, u64>,
}

impl RpcStats {
    fn new() -> Self {
        RpcStats {
            latency: histogram(3),
            per_second: Vec::new(),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Completions, successes and failures.
    pub fn completed(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }
}

/// Everything recorded during one run.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    /// Per RPC.
    pub rpcs: BTreeMap<&'static str, RpcStats>,
    /// Completions per second of completion time (the achieved throughput over time).
    pub completed_per_second: Vec<u64>,
    /// When the last request completed.
    pub last_done: Option<Instant>,
}

impl Recorder {
    /// A recorder for a run whose schedule starts at `start`.
    pub fn new(start: Instant) -> Self {
        Recorder {
            start,
            rpcs: BTreeMap::new(),
            completed_per_second: Vec::new(),
            last_done: None,
        }
    }

    /// When the run's schedule starts.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records a request meant to go out at `intended` that completed at `done`, and returns
    /// the latency recorded: `done - intended`, lateness included.
    pub fn record(&mut self, intended: Instant, done: Instant, outcome: Outcome) -> Duration {
        let latency = done.saturating_duration_since(intended);
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY.as_micros() as u64);
        let second = intended.saturating_duration_since(self.start).as_secs() as usize;
        let stats = self.rpcs.entry(outcome.rpc).or_insert_with(RpcStats::new);
        stats.latency.saturating_record(micros);
        grow(&mut stats.per_second, second, || histogram(2)).saturating_record(micros);
        match outcome.error {
            None => stats.ok += 1,
            Some(label) => *stats.errors.entry(label).or_default() += 1,
        }
        let done_second = done.saturating_duration_since(self.start).as_secs() as usize;
        *grow(&mut self.completed_per_second, done_second, || 0) += 1;
        self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
        latency
    }

    /// Completions of every RPC.
    pub fn completed(&self) -> u64 {
        self.rpcs.values().map(RpcStats::completed).sum()
    }

    /// Successes of every RPC.
    pub fn ok(&self) -> u64 {
        self.rpcs.values().map(|s| s.ok).sum()
    }

    /// Failures of every RPC, by label.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for (label, n) in self.rpcs.values().flat_map(|s| &s.errors) {
            *all.entry(label.clone()).or_default() += n;
        }
        all
    }

    /// The p99 of `rpc` over the last complete second before `now`, for the progress line.
    pub fn recent_p99(&self, rpc: &str, now: Instant) -> Option<Duration> {
        let second = now.saturating_duration_since(self.start).as_secs() as usize;
        let stats = self.rpcs.get(rpc)?;
        let h = stats.per_second.get(second.checked_sub(1)?)?;
        (!h.is_empty()).then(|| Duration::from_micros(h.value_at_quantile(0.99)))
    }
}

/// `v[i]`, first growing `v` with `fill()` values as needed.
fn grow<T>(v: &mut Vec<T>, i: usize, fill: impl Fn() -> T) -> &mut T {
    while v.len() <= i {
        v.push(fill());
    }
    &mut v[i]
}

/// The usual percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    #[serde(rename = "p99_9")]
    pub p999: u64,
    /// Largest value (to the histogram's precision).
    pub max: u64,
    /// Mean, rounded.
    pub mean: u64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean().round() as u64,
        }
    }
}

/// The percentiles at which a latency distribution is plotted: 0 to 99.999, evenly spaced
/// on the `1 / (1 - p)` scale (ten points per decade of "nines").
pub fn distribution_points() -> Vec<f64> {
    (0..=50)
        .map(|i| 100.0 * (1.0 - 10f64.powf(-(i as f64) / 10.0)))
        .collect()
}

/// `(percentile, latency µs)` pairs of `h` at [`distribution_points`], stopping at the last
/// point the count can resolve (a thousand values say nothing about the 99.99th percentile).
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let resolvable = 100.0 * (1.0 - 1.0 / h.len() as f64);
    let mut points: Vec<(f64, u64)> = distribution_points()
        .into_iter()
        .take_while(|&p| p <= resolvable.max(0.0))
        .map(|p| (p, h.value_at_percentile(p)))
        .collect();
    points.push((100.0, h.max()));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        // Meant for t = 10 ms, sent late at t = 40 ms, answered at t = 41 ms: 31 ms, not 1 ms.
        let latency = rec.record(start + ms(10), start + ms(41), Outcome::ok("ListNearby"));
        assert_eq!(latency, ms(31));
        let p = Percentiles::of(&rec.rpcs["ListNearby"].latency);
        assert!((30_900..=31_100).contains(&p.p50), "{p:?}");
    }

    #[test]
    fn a_completion_before_its_intended_time_counts_as_the_minimum() {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        rec.record(start + ms(5), start + ms(4), Outcome::ok("x"));
        assert_eq!(rec.rpcs["x"].latency.min(), 1);
    }

    #[test]
    fn seconds_are_bucketed_by_intended_time_and_throughput_by_completion() {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        rec.record(start + ms(900), start + ms(2_100), Outcome::ok("x"));
        rec.record(start + ms(1_100), start + ms(1_200), Outcome::ok("x"));
        let stats = &rec.rpcs["x"];
        assert_eq!(stats.per_second.len(), 2);
        assert_eq!(stats.per_second[0].len(), 1);
        assert!(stats.per_second[0].min() >= 1_190_000);
        assert_eq!(rec.completed_per_second, vec![0, 1, 1]);
        assert_eq!(rec.last_done, Some(start + ms(2_100)));
    }

    #[test]
    fn errors_are_counted_by_label_and_their_latency_is_kept() {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        rec.record(start, start + ms(1), Outcome::ok("a"));
        rec.record(
            start,
            start + ms(5_000),
            Outcome::failed("a", "DEADLINE_EXCEEDED"),
        );
        rec.record(start, start + ms(2), Outcome::failed("b", "UNAVAILABLE"));
        rec.record(start, start + ms(2), Outcome::failed("b", "UNAVAILABLE"));
        assert_eq!((rec.completed(), rec.ok()), (4, 1));
        let errors: Vec<_> = rec.errors().into_iter().collect();
        assert_eq!(
            errors,
            vec![("DEADLINE_EXCEEDED".into(), 1), ("UNAVAILABLE".into(), 2)]
        );
        assert!(rec.rpcs["a"].latency.max() >= 4_990_000);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram(3);
        for v in 1..=10_000 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 500 + 1;
        assert!(
            near(p.p50, 5_000) && near(p.p90, 9_000) && near(p.p99, 9_900),
            "{p:?}"
        );
        assert!(
            near(p.p999, 9_990) && near(p.max, 10_000) && near(p.mean, 5_000),
            "{p:?}"
        );
        assert_eq!(p.count, 10_000);
        assert_eq!(Percentiles::of(&histogram(3)), Percentiles::default());
    }

    #[test]
    fn the_distribution_stops_where_the_count_stops_resolving_and_ends_at_the_max() {
        let mut h = histogram(3);
        for v in 1..=1_000 {
            h.record(v).unwrap();
        }
        let d = distribution(&h);
        assert_eq!(d.first().map(|p| p.0), Some(0.0));
        assert_eq!(d.last().copied(), Some((100.0, h.max())));
        assert!(d.iter().rev().nth(1).unwrap().0 <= 99.9);
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(distribution(&histogram(3)).is_empty());
    }

    #[test]
    fn recent_p99_reads_the_last_complete_second() {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        rec.record(start + ms(100), start + ms(150), Outcome::ok("x"));
        assert_eq!(rec.recent_p99("x", start + ms(500)), None);
        let p99 = rec.recent_p99("x", start + ms(1_500)).unwrap();
        assert!(p99.abs_diff(ms(50)) < ms(1));
    }
}
