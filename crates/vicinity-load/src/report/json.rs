//! The JSON document (`--json`) of a run and of a whole invocation.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::{FORMAT, Meta, Pace, Percentiles, Report, RunReport, Second, SliceRatio, round};

/// The JSON document (`--json`): what [`Report::to_json`] serializes.
#[derive(Serialize)]
struct ReportJson<'a> {
    format: u32,
    meta: &'a Meta,
    p99_bound_us: u64,
    interleaved: Vec<SliceRatio>,
    failures: Vec<FailureJson<'a>>,
    loads: Vec<RunJson<'a>>,
    runs: Vec<RunJson<'a>>,
    peaks: Vec<PeakJson<'a>>,
    comparison: Value,
}

/// A failed step in the JSON document.
#[derive(Serialize)]
struct FailureJson<'a> {
    step: &'a str,
    error: &'a str,
}

/// A peak in the JSON document.
#[derive(Serialize)]
struct PeakJson<'a> {
    target: &'a str,
    rpc: &'a str,
    rate: f64,
    achieved_rps: f64,
    latency_us: Percentiles,
    saturated_rps: Option<f64>,
}

/// A run in the JSON document.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    target: &'a str,
    rpc: &'a str,
    role: &'static str,
    pace: &'static str,
    rate: Option<f64>,
    concurrency: Option<usize>,
    duration_s: f64,
    planned: u64,
    sent: u64,
    unsent: u64,
    unfinished: u64,
    completed: u64,
    ok: u64,
    errors: &'a BTreeMap<String, u64>,
    /// The share of completed calls refused for a limit (`RESOURCE_EXHAUSTED`).
    refused_share: f64,
    achieved_rps: f64,
    sustained: bool,
    within_bound: bool,
    latency_us: &'a BTreeMap<String, Percentiles>,
    cpu_s: &'a BTreeMap<String, f64>,
    cpu_us_per_request: BTreeMap<String, f64>,
    per_second: &'a [Second],
    distribution: &'a [(f64, u64)],
}

impl RunReport {
    /// The run as it appears in the JSON document.
    pub fn to_json(&self) -> RunJson<'_> {
        let (pace, rate, concurrency) = match self.pace {
            Pace::Open { rate } => ("open", Some(rate), None),
            Pace::Closed { concurrency } => ("closed", None, Some(concurrency)),
        };
        RunJson {
            target: &self.target,
            rpc: &self.rpc,
            role: self.role.name(),
            pace,
            rate,
            concurrency,
            duration_s: self.duration.as_secs_f64(),
            planned: self.planned,
            sent: self.sent,
            unsent: self.unsent,
            unfinished: self.unfinished,
            completed: self.completed,
            ok: self.ok,
            errors: &self.errors,
            refused_share: round(self.refused_share(), 4),
            achieved_rps: round(self.achieved, 1),
            sustained: self.sustained,
            within_bound: self.within_bound,
            latency_us: &self.latency,
            cpu_s: &self.cpu,
            cpu_us_per_request: self.cpu_per_request(),
            per_second: &self.seconds,
            distribution: &self.distribution,
        }
    }
}

impl Report {
    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let document = ReportJson {
            format: FORMAT,
            meta: &self.meta,
            p99_bound_us: self.p99_bound_us,
            interleaved: self
                .slice_ratios()
                .into_iter()
                .map(|r| SliceRatio {
                    median: round(r.median, 3),
                    min: round(r.min, 3),
                    max: round(r.max, 3),
                    ..r
                })
                .collect(),
            failures: self
                .failures
                .iter()
                .map(|(step, error)| FailureJson { step, error })
                .collect(),
            loads: self.loads.iter().map(RunReport::to_json).collect(),
            runs: self.runs.iter().map(RunReport::to_json).collect(),
            peaks: self
                .peaks
                .iter()
                .map(|p| PeakJson {
                    target: &p.target,
                    rpc: &p.rpc,
                    rate: p.rate,
                    achieved_rps: round(p.achieved, 1),
                    latency_us: p.latency,
                    saturated_rps: p.saturated.map(|s| round(s, 1)),
                })
                .collect(),
            comparison: self.comparison(),
        };
        serde_json::to_value(document).unwrap_or(Value::Null)
    }

    /// Each peak beside the service's ListNearby peak: `{target: ratio}` (service ÷ peer),
    /// when both were measured.
    pub fn comparison(&self) -> Value {
        let Some(ours) = self.peaks.iter().find(|p| p.target == "service") else {
            return Value::Null;
        };
        let ratios: serde_json::Map<String, Value> = self
            .peaks
            .iter()
            .filter(|p| p.target != "service" && p.achieved > 0.0)
            .map(|p| {
                (
                    p.target.clone(),
                    json!(round(ours.achieved / p.achieved, 2)),
                )
            })
            .collect();
        if ratios.is_empty() {
            Value::Null
        } else {
            json!({ "service_rpc": ours.rpc, "service_over": ratios })
        }
    }
}
