//! Runs against one target: a fixed rate, a sweep, or the peak search — the highest open-loop
//! rate the target sustains with its p99 within the bound.
//!
//! The search: latency at concurrency 1, then a closed-loop probe that saturates the target
//! and estimates its capacity `C`, then open-loop runs at falling fractions of `C` until one
//! passes, then one bisection between that rate and the failed one above it, then a run at
//! half the peak (contract §7 asks for p99 there). At most [`MAX_SEARCH_RUNS`] open-loop runs.

use std::{sync::Arc, time::Duration};

use super::{
    cpu::{Snapshot, Watched},
    driver::{Pace, RunSpec, Target, drive},
    report::{Criteria, Peak, Role, RunReport, pace_text, run_text},
};

/// The fractions of the probed capacity tried, highest first.
pub const STEPS: [f64; 11] = [1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.35, 0.25, 0.15, 0.1];
/// Bisections after the first passing step.
pub const REFINEMENTS: usize = 1;
/// The most open-loop runs one search makes.
pub const MAX_SEARCH_RUNS: usize = STEPS.len() + REFINEMENTS;
/// The longest concurrency-1 and probe runs.
const SHORT_RUN: Duration = Duration::from_secs(5);
/// Callers of the capacity probe (capped by `--max-in-flight`).
pub const PROBE_CONCURRENCY: usize = 128;

/// How runs are made.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of each open-loop run.
    pub duration: Duration,
    /// Requests outstanding at most.
    pub max_in_flight: usize,
    /// How long past a schedule's end requests may still go out.
    pub grace: Duration,
    /// How long to wait for answers once sending stopped.
    pub drain: Duration,
    /// Verdicts.
    pub criteria: Criteria,
    /// Draw the progress line and print each run when it ends.
    pub verbose: bool,
    /// Processes whose CPU time each run reports.
    pub watched: Vec<Watched>,
}

/// The runs made so far and the peaks found.
#[derive(Debug)]
pub struct Session {
    /// How runs are made.
    pub settings: Settings,
    /// Every run, in order.
    pub runs: Vec<RunReport>,
    /// One per target searched or swept.
    pub peaks: Vec<Peak>,
}

/// Where a search goes next, from the probed capacity and the (rate, passed) runs so far.
/// `None`: done.
pub fn next_rate(capacity: f64, tried: &[(f64, bool)]) -> Option<f64> {
    if capacity <= 0.0 || tried.len() >= MAX_SEARCH_RUNS {
        return None;
    }
    let best = tried.iter().filter(|t| t.1).map(|t| t.0).fold(None, max);
    let Some(best) = best else {
        return STEPS.get(tried.len()).map(|f| round_rate(capacity * f));
    };
    let failed_above = tried
        .iter()
        .filter(|t| !t.1 && t.0 > best)
        .map(|t| t.0)
        .fold(None, min)?;
    let bisections = tried.iter().skip_while(|t| !t.1).count() - 1;
    let mid = round_rate((best + failed_above) / 2.0);
    let worth_it = (failed_above - best) / best > 0.06 && mid > best && mid < failed_above;
    (bisections < REFINEMENTS && worth_it).then_some(mid)
}

fn max(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.max(b)))
}

fn min(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// A rate rounded to three significant digits (at least 1/s).
pub fn round_rate(rate: f64) -> f64 {
    if rate < 1.0 {
        return 1.0;
    }
    let unit = 10f64.powi(rate.log10().floor() as i32 - 2);
    (rate / unit).round() * unit
}

impl Session {
    /// A session with no runs yet.
    pub fn new(settings: Settings) -> Self {
        Session {
            settings,
            runs: Vec::new(),
            peaks: Vec::new(),
        }
    }

    /// One run of `target` (called `name` in the report).
    pub async fn run(
        &mut self,
        target: &Arc<dyn Target>,
        name: &str,
        role: Role,
        pace: Pace,
        duration: Duration,
    ) -> RunReport {
        let s = &self.settings;
        let spec = RunSpec {
            pace,
            duration,
            max_in_flight: s.max_in_flight,
            grace: s.grace,
            drain: s.drain,
            limit: None,
        };
        let label = format!("{name} {} {}", target.primary(), pace_text(pace));
        let before = Snapshot::take(&s.watched);
        let outcome = drive(target.clone(), &spec, &label, s.verbose).await;
        let cpu = Snapshot::take(&s.watched).since(&before);
        let rpc = target.primary();
        let mut report = RunReport::new(name, role, pace, duration, &outcome, rpc, &s.criteria);
        report.cpu = cpu;
        if s.verbose {
            println!("{}", run_text(&report));
        }
        self.runs.push(report.clone());
        report
    }

    /// Open-loop runs at each of `rates`; records and returns the best that passed.
    pub async fn sweep(
        &mut self,
        target: &Arc<dyn Target>,
        name: &str,
        rates: &[f64],
    ) -> Option<Peak> {
        let mut best: Option<RunReport> = None;
        for &rate in rates {
            self.step(target, name, rate, &mut best).await;
        }
        self.record_peak(best, None)
    }

    /// The peak search (see the module doc); records and returns the peak.
    pub async fn find_peak(&mut self, target: &Arc<dyn Target>, name: &str) -> Option<Peak> {
        let short = self.settings.duration.min(SHORT_RUN);
        self.run(
            target,
            name,
            Role::Single,
            Pace::Closed { concurrency: 1 },
            short,
        )
        .await;
        let concurrency = self.settings.max_in_flight.min(PROBE_CONCURRENCY);
        let probe = self
            .run(
                target,
                name,
                Role::Probe,
                Pace::Closed { concurrency },
                short,
            )
            .await;
        let mut tried: Vec<(f64, bool)> = Vec::new();
        let mut best: Option<RunReport> = None;
        while let Some(rate) = next_rate(probe.achieved, &tried) {
            let passed = self.step(target, name, rate, &mut best).await;
            tried.push((rate, passed));
        }
        let peak = self.record_peak(best, Some(probe.achieved))?;
        let half = Pace::Open {
            rate: round_rate(peak.rate / 2.0),
        };
        self.run(target, name, Role::HalfPeak, half, self.settings.duration)
            .await;
        Some(peak)
    }

    /// Runs one open-loop step at `rate`; keeps it in `best` when it passed at a higher rate
    /// than the best so far. Returns whether it passed.
    async fn step(
        &mut self,
        target: &Arc<dyn Target>,
        name: &str,
        rate: f64,
        best: &mut Option<RunReport>,
    ) -> bool {
        let pace = Pace::Open { rate };
        let run = self
            .run(target, name, Role::Step, pace, self.settings.duration)
            .await;
        let passed = run.passed();
        if passed && best.as_ref().is_none_or(|b| rate_of(b) < rate) {
            *best = Some(run);
        }
        passed
    }

    fn record_peak(&mut self, best: Option<RunReport>, saturated: Option<f64>) -> Option<Peak> {
        let run = best?;
        let peak = Peak {
            target: run.target.clone(),
            rpc: run.rpc.clone(),
            rate: rate_of(&run),
            achieved: run.achieved,
            latency: run.primary(),
            saturated,
        };
        self.peaks.push(peak.clone());
        Some(peak)
    }
}

fn rate_of(run: &RunReport) -> f64 {
    match run.pace {
        Pace::Open { rate } => rate,
        Pace::Closed { .. } => run.achieved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a target that passes exactly at rates up to `capacity`.
    fn search(probe: f64, capacity: f64) -> (Option<f64>, usize) {
        let mut tried = Vec::new();
        while let Some(rate) = next_rate(probe, &tried) {
            tried.push((rate, rate <= capacity));
        }
        let best = tried.iter().filter(|t| t.1).map(|t| t.0).fold(None, max);
        (best, tried.len())
    }

    #[test]
    fn the_search_lands_within_a_few_percent_below_the_true_peak() {
        for (probe, capacity) in [(10_000.0, 8_300.0), (10_000.0, 5_200.0), (1_000.0, 990.0)] {
            let (best, runs) = search(probe, capacity);
            let best = best.unwrap();
            assert!(
                best <= capacity && best >= 0.94 * capacity,
                "{probe} {capacity}: {best}"
            );
            assert!(runs <= MAX_SEARCH_RUNS);
        }
    }

    #[test]
    fn a_target_above_every_step_stops_at_the_first() {
        assert_eq!(search(1_000.0, 5_000.0), (Some(1_200.0), 1));
    }

    #[test]
    fn a_target_below_every_step_gives_no_peak_in_bounded_runs() {
        assert_eq!(search(1_000.0, 10.0), (None, STEPS.len()));
        assert_eq!(next_rate(0.0, &[]), None);
    }

    #[test]
    fn rates_are_rounded_to_three_digits() {
        assert_eq!(round_rate(12_345.0), 12_300.0);
        assert_eq!(round_rate(987.6), 988.0);
        assert_eq!(round_rate(0.2), 1.0);
    }
}
