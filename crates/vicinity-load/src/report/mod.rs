//! What a run and a whole invocation report: the numbers, the verdicts (sustained, within
//! the p99 bound), the JSON document and the text on stdout.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;
use serde_json::Value;

use super::{
    driver::{Pace, RunOutcome},
    record::{Percentiles, distribution},
};

mod json;
mod text;

pub use json::RunJson;
pub use text::{ms, pace_text, run_text};

/// The version of the JSON document's shape.
pub const FORMAT: u32 = 1;

/// The share of a run's calls refused by the server's limits (`RESOURCE_EXHAUSTED`) past which
/// its report warns: the throughput it reports counts those refusals, which measure the limits,
/// not the service's capacity.
pub const REFUSAL_WARNING_SHARE: f64 = 0.01;

/// When a run counts as sustained and within the bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criteria {
    /// The largest acceptable p99 of the run's RPC.
    pub p99_bound: Duration,
    /// Achieved throughput must reach this share of the target rate.
    pub min_achieved: f64,
    /// At most this share of requests may fail.
    pub max_error_share: f64,
}

impl Criteria {
    /// Sustained: at least 95 % of the rate achieved, at most 0.1 % errors, nothing unsent.
    pub fn with_bound(p99_bound: Duration) -> Self {
        Criteria {
            p99_bound,
            min_achieved: 0.95,
            max_error_share: 0.001,
        }
    }
}

/// Why a run was made, which decides where it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A fixed rate the user asked for.
    Fixed,
    /// One rate of a sweep or of the peak search.
    Step,
    /// The closed-loop probe that seeds the peak search.
    Probe,
    /// Latency at concurrency 1.
    Single,
    /// The run at half the peak.
    HalfPeak,
    /// Loading a population.
    Load,
    /// One slice of the interleaved comparison with the peer.
    Slice,
    /// A side's run before the interleaved comparison (`--warm-up`), in no ratio.
    WarmUp,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Fixed => "fixed",
            Role::Step => "step",
            Role::Probe => "probe",
            Role::Single => "concurrency-1",
            Role::HalfPeak => "half-peak",
            Role::Load => "load",
            Role::Slice => "slice",
            Role::WarmUp => "warm-up",
        }
    }
}

/// One second of a run (by intended send time).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the run's start.
    pub t: usize,
    /// Completions during that second (by completion time).
    pub completed: u64,
    /// p50 of the primary RPC sent that second, µs.
    #[serde(rename = "p50_us")]
    pub p50: u64,
    /// p99 of the same, µs.
    #[serde(rename = "p99_us")]
    pub p99: u64,
    /// Max of the same, µs.
    #[serde(rename = "max_us")]
    pub max: u64,
}

/// One run, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// What was driven: `service`, `redis-geo 1 km`, ...
    pub target: String,
    /// The run's RPC.
    pub rpc: String,
    /// Why it ran.
    pub role: Role,
    /// The pacing.
    pub pace: Pace,
    /// The schedule's length.
    pub duration: Duration,
    /// Requests planned, sent, never sent, sent but unanswered at the end.
    pub planned: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests never sent (the harness fell too far behind).
    pub unsent: u64,
    /// Requests unanswered when the run closed.
    pub unfinished: u64,
    /// Completions, all RPCs.
    pub completed: u64,
    /// Successes, all RPCs.
    pub ok: u64,
    /// Failures by label, all RPCs.
    pub errors: BTreeMap<String, u64>,
    /// Completions per second over the run's active span.
    pub achieved: f64,
    /// Latency per RPC.
    pub latency: BTreeMap<String, Percentiles>,
    /// The primary RPC per second.
    pub seconds: Vec<Second>,
    /// The primary RPC's latency distribution: (percentile, µs).
    pub distribution: Vec<(f64, u64)>,
    /// The rate held: enough achieved, few errors, nothing unsent.
    pub sustained: bool,
    /// The primary RPC's p99 is within the bound.
    pub within_bound: bool,
    /// CPU seconds each watched process spent during the run.
    pub cpu: BTreeMap<String, f64>,
}

impl RunReport {
    /// Summarises a run of `rpc` against `target`.
    pub fn new(
        target: &str,
        role: Role,
        pace: Pace,
        duration: Duration,
        run: &RunOutcome,
        rpc: &str,
        criteria: &Criteria,
    ) -> Self {
        let rec = &run.recorder;
        let span = rec
            .last_done
            .map_or(duration, |d| d.saturating_duration_since(rec.start()))
            .max(duration);
        let achieved = rec.completed() as f64 / span.as_secs_f64().max(1e-9);
        let primary = rec.rpcs.get(rpc);
        let seconds = primary.map_or_else(Vec::new, |stats| {
            (0..stats.per_second.len())
                .map(|t| second(t, &stats.per_second[t], &rec.completed_per_second))
                .collect()
        });
        let p99 = primary.map_or(0, |s| Percentiles::of(&s.latency).p99);
        let errors = rec.errors();
        let failed: u64 = errors.values().sum();
        let sustained = run.unsent == 0
            && run.unfinished == 0
            && failed as f64 <= criteria.max_error_share * rec.completed() as f64
            && match pace {
                Pace::Open { rate } => achieved >= criteria.min_achieved * rate,
                Pace::Closed { .. } => true,
            };
        RunReport {
            target: target.to_owned(),
            rpc: rpc.to_owned(),
            role,
            pace,
            // A run bounded by a count, not a time (the populate step: planned 0), reports
            // the time it took (it printed `for 0ns`).
            duration: if duration.is_zero() { span } else { duration },
            planned: run.planned,
            sent: run.sent,
            unsent: run.unsent,
            unfinished: run.unfinished,
            completed: rec.completed(),
            ok: rec.ok(),
            errors,
            achieved,
            latency: rec
                .rpcs
                .iter()
                .map(|(k, s)| (k.to_string(), Percentiles::of(&s.latency)))
                .collect(),
            seconds,
            distribution: primary.map_or_else(Vec::new, |s| distribution(&s.latency)),
            sustained,
            within_bound: primary.is_some() && p99 <= criteria.p99_bound.as_micros() as u64,
            cpu: BTreeMap::new(),
        }
    }

    /// CPU microseconds per completed request, per watched process.
    pub fn cpu_per_request(&self) -> BTreeMap<String, f64> {
        let n = self.completed.max(1) as f64;
        self.cpu
            .iter()
            .map(|(name, s)| (name.clone(), round(s * 1e6 / n, 1)))
            .collect()
    }

    /// The share of the completed calls the server refused for a limit (`RESOURCE_EXHAUSTED`,
    /// with or without the limit named).
    pub fn refused_share(&self) -> f64 {
        let refused: u64 = self
            .errors
            .iter()
            .filter(|(label, _)| label.starts_with("RESOURCE_EXHAUSTED"))
            .map(|(_, n)| n)
            .sum();
        refused as f64 / self.completed.max(1) as f64
    }

    /// A warning when more than [`REFUSAL_WARNING_SHARE`] of the calls were refused for a
    /// limit (`None`: fewer).
    pub fn refusal_warning(&self) -> Option<String> {
        let share = self.refused_share();
        (share > REFUSAL_WARNING_SHARE).then(|| {
            format!(
                "WARNING: {:.1} % of the calls were refused for a limit (RESOURCE_EXHAUSTED): the throughput above counts them; to measure capacity, run the server with its limits out of reach (VICINITY_*_RATE=1000000/1s: docs/operations.md, \"Abuse limits\")",
                share * 100.0
            )
        })
    }

    /// The primary RPC's percentiles.
    pub fn primary(&self) -> Percentiles {
        self.latency.get(&self.rpc).copied().unwrap_or_default()
    }

    /// Sustained and within the bound.
    pub fn passed(&self) -> bool {
        self.sustained && self.within_bound
    }

    /// Why a run did not pass, in words that name what to change: the rate itself (not
    /// sustained), or the latency bound (`--p99-bound`) at a rate that was held.
    pub fn why_failed(&self, p99_bound_us: u64) -> String {
        let ms = |us: u64| us as f64 / 1e3;
        if !self.sustained {
            let failed: u64 = self.errors.values().sum();
            format!(
                "the rate was not held ({:.0}/s achieved, {} unsent, {} unanswered, {failed} errors)",
                self.achieved, self.unsent, self.unfinished
            )
        } else if !self.within_bound {
            format!(
                "the rate was held, but p99 {:.2} ms is over the bound of {} ms (--p99-bound)",
                ms(self.primary().p99),
                ms(p99_bound_us)
            )
        } else {
            "passed".into()
        }
    }

    /// `ListNearby open 5000/s` or `ListNearby closed x1`.
    pub fn title(&self) -> String {
        format!("{} {} {}", self.target, self.rpc, pace_text(self.pace))
    }
}

fn second(t: usize, h: &hdrhistogram::Histogram<u64>, completed: &[u64]) -> Second {
    let p = Percentiles::of(h);
    Second {
        t,
        completed: completed.get(t).copied().unwrap_or(0),
        p50: p.p50,
        p99: p.p99,
        max: p.max,
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The highest sustained rate within the bound found for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    /// The target.
    pub target: String,
    /// Its RPC.
    pub rpc: String,
    /// The open-loop rate that passed.
    pub rate: f64,
    /// What that run achieved.
    pub achieved: f64,
    /// Its primary percentiles.
    pub latency: Percentiles,
    /// What the closed-loop probe achieved (saturation), when the peak was searched.
    pub saturated: Option<f64>,
}

#[cfg(test)]
impl Peak {
    /// A peak of `target`'s `rpc` held at `rate`, with no latency and no saturation probe.
    pub(crate) fn held(target: &str, rpc: &str, rate: f64) -> Self {
        Peak {
            target: target.into(),
            rpc: rpc.into(),
            rate,
            achieved: rate,
            latency: Percentiles::default(),
            saturated: None,
        }
    }
}

/// What was run against what: flags, population, machine facts (the JSON's `meta`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Meta {
    /// `vicinity <version>`.
    pub harness: String,
    /// `--label`.
    pub label: Option<String>,
    /// The service's address.
    pub addr: String,
    /// Whether a peer Redis was compared.
    pub peer: bool,
    /// `w1` .. `w4`.
    pub workload: String,
    /// City users.
    pub users: u64,
    /// Hotspot users.
    pub hotspot_users: u64,
    /// The seed.
    pub seed: u64,
    /// Who asks for lists.
    pub viewers: String,
    /// `{"rate": r}`, `{"sweep": [..]}`, `"find-peak"` or `{"closed": n}`.
    pub mode: Value,
    /// Each run's length.
    pub duration_s: f64,
    /// `--max-in-flight`.
    pub max_in_flight: usize,
    /// `--connections`.
    pub connections: usize,
    /// The call deadline.
    pub timeout_s: f64,
    /// CPUs of the machine.
    pub cpus: usize,
}

/// The ratios of the service over one peer target across the rounds of an interleaved
/// comparison (see [`Report::slice_ratios`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceRatio {
    /// The peer target.
    pub target: String,
    /// `throughput` (closed loop) or `p99` (open loop).
    pub measure: &'static str,
    /// The median ratio.
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many rounds.
    pub rounds: usize,
}

/// The whole invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// What was run against what: flags, population, machine facts.
    pub meta: Meta,
    /// Populating the service and the peer, if done.
    pub loads: Vec<RunReport>,
    /// Every measured run, in order.
    pub runs: Vec<RunReport>,
    /// The peak per target, when searched or swept.
    pub peaks: Vec<Peak>,
    /// `p99 ≤ bound` used by the verdicts, µs.
    pub p99_bound_us: u64,
    /// Steps that failed while the rest went on (a peer that timed out, a clean-up), each
    /// as `(step, error)`: what was measured before and after is kept.
    pub failures: Vec<(String, String)>,
}

impl Report {
    /// The interleaved comparison: for each peer target, the per-round ratios of the service
    /// over it (closed loop: completions per second; open loop: p99), as (target, measure,
    /// median, min, max, rounds). A round is the service's slice and the peers' slices after
    /// it, so each ratio compares runs minutes apart at most.
    pub fn slice_ratios(&self) -> Vec<SliceRatio> {
        let mut by_target: BTreeMap<String, (&'static str, Vec<f64>)> = BTreeMap::new();
        let mut ours: Option<&RunReport> = None;
        for run in self.runs.iter().filter(|r| r.role == Role::Slice) {
            if run.target == "service" {
                ours = Some(run);
                continue;
            }
            let Some(service) = ours else { continue };
            let (measure, ratio) = match run.pace {
                Pace::Closed { .. } => ("throughput", service.achieved / run.achieved),
                Pace::Open { .. } => (
                    "p99",
                    service.primary().p99 as f64 / run.primary().p99.max(1) as f64,
                ),
            };
            if ratio.is_finite() {
                let entry = by_target
                    .entry(run.target.clone())
                    .or_insert_with(|| (measure, Vec::new()));
                entry.1.push(ratio);
            }
        }
        by_target
            .into_iter()
            .map(|(target, (measure, mut ratios))| {
                ratios.sort_by(f64::total_cmp);
                let n = ratios.len();
                let median = match n % 2 {
                    1 => ratios[n / 2],
                    _ => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
                };
                SliceRatio {
                    target,
                    measure,
                    median,
                    min: ratios[0],
                    max: ratios[n - 1],
                    rounds: n,
                }
            })
            .collect()
    }

    /// What failed of what was asked: every failed step, and every fixed-rate run of the
    /// service (whole, or each slice of an interleaved comparison) that did not hold its rate
    /// within the p99 bound (a sweep or a peak search looks for the limit, so its runs past it
    /// are not failures; nor are the peer's).
    pub fn verdict_failures(&self) -> Vec<String> {
        let runs = self
            .runs
            .iter()
            .filter(|r| {
                let asked =
                    r.role == Role::Fixed || (r.role == Role::Slice && r.target == "service");
                asked && matches!(r.pace, Pace::Open { .. })
            })
            .filter(|r| !r.passed())
            .map(|r| format!("{}: {}", r.title(), r.why_failed(self.p99_bound_us)));
        self.failures
            .iter()
            .map(|(step, _)| format!("{step}: failed"))
            .chain(runs)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::record::{Outcome, Recorder};

    /// A closed-loop run warns when more than 1 % of its calls were refused for a limit, and
    /// says by how much; other errors, or fewer refusals, do not warn.
    #[test]
    fn a_run_mostly_refused_for_a_limit_warns() {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        for i in 0..100 {
            let outcome = match i % 4 {
                0 => Outcome::failed("UpdateLocation", "RESOURCE_EXHAUSTED/RATE_LIMITED/updates"),
                1 => Outcome::failed("UpdateLocation", "UNAVAILABLE"),
                _ => Outcome::ok("UpdateLocation"),
            };
            rec.record(at(i), at(i + 1), outcome);
        }
        let run = RunOutcome {
            recorder: rec,
            planned: 100,
            sent: 100,
            unsent: 0,
            unfinished: 0,
        };
        let criteria = Criteria::with_bound(Duration::from_millis(5));
        let pace = Pace::Closed { concurrency: 8 };
        let secs = Duration::from_secs(1);
        let r = RunReport::new(
            "service",
            Role::Fixed,
            pace,
            secs,
            &run,
            "UpdateLocation",
            &criteria,
        );
        assert_eq!(r.refused_share(), 0.25);
        let warning = r.refusal_warning().expect("a warning");
        assert!(warning.contains("25.0 %"), "{warning}");
        assert!(text::run_text(&r).contains(&warning));
        let json = serde_json::to_value(r.to_json()).unwrap();
        assert_eq!(json["refused_share"], 0.25);
        assert!(
            report(100.0, &steady(100, 1), 50)
                .refusal_warning()
                .is_none()
        );
    }

    fn outcome(answers: &[(u64, u64)], errors: u64) -> RunOutcome {
        let start = Instant::now();
        let mut rec = Recorder::new(start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        for &(sent, done) in answers {
            rec.record(at(sent), at(done), Outcome::ok("ListNearby"));
        }
        for _ in 0..errors {
            rec.record(at(0), at(1), Outcome::failed("ListNearby", "UNAVAILABLE"));
        }
        let n = answers.len() as u64 + errors;
        RunOutcome {
            recorder: rec,
            planned: n,
            sent: n,
            unsent: 0,
            unfinished: 0,
        }
    }

    fn report(rate: f64, answers: &[(u64, u64)], errors: u64) -> RunReport {
        let run = outcome(answers, errors);
        let criteria = Criteria::with_bound(Duration::from_millis(5));
        let duration = Duration::from_secs(1);
        let pace = Pace::Open { rate };
        RunReport::new(
            "service",
            Role::Step,
            pace,
            duration,
            &run,
            "ListNearby",
            &criteria,
        )
    }

    fn steady(n: u64, latency_ms: u64) -> Vec<(u64, u64)> {
        (0..n)
            .map(|i| (i * 1000 / n, i * 1000 / n + latency_ms))
            .collect()
    }

    /// The service's fixed-rate runs are verdicts, whole or in interleaved slices; a peer's
    /// slices and a peak search's steps are not.
    #[test]
    fn the_service_slices_of_a_fixed_rate_are_verdicts_and_the_peers_are_not() {
        let slow = |target: &str, role| RunReport {
            target: target.into(),
            role,
            ..report(100.0, &steady(100, 50), 0)
        };
        assert!(!slow("service", Role::Slice).passed());
        let verdicts = |runs: Vec<RunReport>| {
            Report {
                runs,
                ..Report::default()
            }
            .verdict_failures()
            .len()
        };
        assert_eq!(verdicts(vec![slow("service", Role::Slice)]), 1);
        assert_eq!(verdicts(vec![slow("service", Role::Fixed)]), 1);
        assert_eq!(verdicts(vec![slow("redis-geo-1km", Role::Slice)]), 0);
        assert_eq!(verdicts(vec![slow("service", Role::Step)]), 0);
    }

    /// A run bounded by a count (the populate step) reports the time it
    /// took, not `for 0ns`; a timed run keeps its planned duration.
    #[test]
    fn a_count_bounded_run_reports_the_time_it_took() {
        let run = outcome(&steady(10, 1), 0);
        let criteria = Criteria::with_bound(Duration::from_millis(5));
        let pace = Pace::Closed { concurrency: 4 };
        let counted = RunReport::new(
            "service",
            Role::Load,
            pace,
            Duration::ZERO,
            &run,
            "ListNearby",
            &criteria,
        );
        assert!(
            counted.duration >= Duration::from_millis(900),
            "{:?}",
            counted.duration
        );
        assert!(!run_text(&counted).contains("for 0ns"));
        assert_eq!(
            report(100.0, &steady(100, 1), 0).duration,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_run_that_keeps_its_rate_and_bound_passes() {
        let r = report(100.0, &steady(100, 1), 0);
        assert!(r.sustained && r.within_bound && r.passed(), "{r:?}");
        assert!((r.achieved - 100.0).abs() < 1.0, "{}", r.achieved);
        assert_eq!((r.completed, r.ok), (100, 100));
    }

    #[test]
    fn a_slow_tail_is_over_the_bound_and_a_late_finish_is_not_sustained() {
        let r = report(100.0, &steady(100, 20), 0);
        assert!(r.sustained && !r.within_bound);
        // Everything answered two seconds late: the rate was not held.
        let r = report(100.0, &steady(100, 2_000), 0);
        assert!(!r.sustained && r.achieved < 50.0);
    }

    #[test]
    fn errors_beyond_a_thousandth_break_sustained() {
        let r = report(100.0, &steady(1_000, 1), 2);
        assert!(!r.sustained);
        assert_eq!(r.errors.get("UNAVAILABLE"), Some(&2));
        assert!(report(100.0, &steady(1_000, 1), 1).sustained);
    }

    #[test]
    fn the_json_document_has_the_documented_shape() {
        let run = report(100.0, &steady(100, 1), 1);
        let doc = Report {
            runs: vec![run],
            peaks: vec![
                Peak::held("service", "ListNearby", 1000.0),
                Peak::held("redis-geo-1km", "GEOSEARCH", 100.0),
            ],
            p99_bound_us: 5_000,
            ..Report::default()
        };
        let text = doc.to_json().to_string();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["format"], 1);
        let run = &back["runs"][0];
        for key in [
            "rate",
            "sent",
            "ok",
            "achieved_rps",
            "sustained",
            "per_second",
        ] {
            assert!(!run[key].is_null(), "{key}");
        }
        assert_eq!(run["pace"], "open");
        assert_eq!(run["errors"]["UNAVAILABLE"], 1);
        let latency = &run["latency_us"]["ListNearby"];
        for key in ["count", "p50", "p90", "p99", "p99_9", "max", "mean"] {
            assert!(latency[key].is_u64(), "{key}");
        }
        assert!(run["distribution"][0].is_array());
        for key in ["t", "completed", "p50_us", "p99_us", "max_us"] {
            assert!(run["per_second"][0][key].is_u64(), "{key}");
        }
        for key in ["harness", "users", "seed", "mode", "duration_s", "cpus"] {
            assert!(back["meta"].get(key).is_some(), "{key}");
        }
        assert!(back["failures"].is_array() && back["interleaved"].is_array());
        assert_eq!(back["comparison"]["service_over"]["redis-geo-1km"], 10.0);
        assert_eq!(back["peaks"][0]["rate"], 1000.0);
    }

    #[test]
    fn the_peak_table_shows_ratios_against_the_service() {
        let peak = |target: &str, achieved| Peak {
            target: target.into(),
            rpc: "x".into(),
            rate: achieved,
            achieved,
            latency: Percentiles::default(),
            saturated: Some(achieved * 1.5),
        };
        let doc = Report {
            peaks: vec![peak("service", 12_000.0), peak("redis-geo-500m", 4_000.0)],
            p99_bound_us: 10_000,
            ..Report::default()
        };
        let table = doc.peak_table();
        assert!(table.contains("| redis-geo-500m | x | 4000 |"), "{table}");
        assert!(table.contains("| 6000 | 3.0× | 3.0× |"), "{table}");
    }
}
