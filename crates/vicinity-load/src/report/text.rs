//! The text a run and a whole invocation print on stdout.

use std::fmt::Write;

use super::{Pace, Report, RunReport};

/// `open 5000/s` or `closed x8`.
pub fn pace_text(pace: Pace) -> String {
    match pace {
        Pace::Open { rate } => format!("open {rate:.0}/s"),
        Pace::Closed { concurrency } => format!("closed x{concurrency}"),
    }
}

/// A run's block of text.
pub fn run_text(run: &RunReport) -> String {
    let verdict = match (run.pace, run.sustained, run.within_bound) {
        (Pace::Closed { .. }, _, _) => "",
        (_, true, true) => "  sustained, p99 within bound",
        (_, true, false) => "  sustained, p99 OVER bound",
        (_, false, _) => "  NOT sustained",
    };
    let errors = match run.errors.is_empty() {
        true => String::new(),
        false => format!(" {:?}", run.errors),
    };
    let mut out = format!(
        "{}  for {:?}: sent {} ok {} errors {}{errors} unsent {}  achieved {:.0}/s{verdict}\n",
        run.title(),
        run.duration,
        run.sent,
        run.ok,
        run.completed - run.ok,
        run.unsent,
        run.achieved,
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency", "p50", "p90", "p99", "p99.9", "max", "count"
    );
    for (rpc, p) in &run.latency {
        let _ = writeln!(
            out,
            "  {rpc:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.max),
            p.count
        );
    }
    if let Some(warning) = run.refusal_warning() {
        let _ = writeln!(out, "  {warning}");
    }
    if !run.cpu.is_empty() {
        let per = run.cpu_per_request();
        let cpu: Vec<String> = run
            .cpu
            .iter()
            .map(|(name, s)| format!("{name} {s:.2}s = {:.1}µs/request", per[name]))
            .collect();
        let _ = writeln!(out, "  cpu: {}", cpu.join(", "));
    }
    out
}

/// Microseconds as milliseconds with sensible digits.
pub fn ms(us: u64) -> String {
    let ms = us as f64 / 1e3;
    match ms {
        m if m < 1.0 => format!("{m:.3}ms"),
        m if m < 100.0 => format!("{m:.2}ms"),
        m => format!("{m:.0}ms"),
    }
}

impl Report {
    /// The human summary printed at the end.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for run in self.loads.iter().chain(&self.runs) {
            out += &run_text(run);
        }
        if !self.peaks.is_empty() {
            out += &self.peak_table();
        }
        out += &self.slice_text();
        out += &self.failure_text();
        out
    }

    /// The interleaved comparison as text (empty without one).
    pub fn slice_text(&self) -> String {
        let ratios = self.slice_ratios();
        if ratios.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\ninterleaved: service ÷ peer per round (throughput closed-loop, p99 open-loop)\n\n\
             | peer | measure | median | min | max | rounds |\n|---|---|---|---|---|---|\n",
        );
        for r in ratios {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                r.target, r.measure, r.median, r.min, r.max, r.rounds
            );
        }
        out
    }

    /// The failed steps, one line each (empty when none failed).
    pub fn failure_text(&self) -> String {
        self.failures
            .iter()
            .map(|(step, error)| format!("FAILED: {step}: {error}\n"))
            .collect()
    }

    /// The peaks as a Markdown table, with ratios against the service when it is there: of
    /// the rates held within the bound, and of the closed-loop maxima (saturation).
    pub fn peak_table(&self) -> String {
        let bound = self.p99_bound_us as f64 / 1e3;
        let mut out = format!(
            "\npeaks: highest open-loop rate held with p99 <= {bound} ms, and the closed-loop maximum\n\n\
             | target | rpc | held/s | p50 | p99 | closed-loop max/s | service ÷ this, held | service ÷ this, max |\n\
             |---|---|---|---|---|---|---|---|\n"
        );
        let ours = self.peaks.iter().find(|p| p.target == "service");
        let ratio = |of: Option<f64>, to: Option<f64>, same: bool| match (of, to) {
            (Some(a), Some(b)) if !same && b > 0.0 => format!("{:.1}×", a / b),
            _ => "-".into(),
        };
        for p in &self.peaks {
            let same = p.target == "service";
            let held = ratio(ours.map(|o| o.achieved), Some(p.achieved), same);
            let max = ratio(ours.and_then(|o| o.saturated), p.saturated, same);
            let saturated = p.saturated.map_or("-".into(), |s| format!("{s:.0}"));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {saturated} | {held} | {max} |",
                p.target,
                p.rpc,
                p.achieved,
                ms(p.latency.p50),
                ms(p.latency.p99)
            );
        }
        out
    }
}
