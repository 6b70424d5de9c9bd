//! The SVG chart of a report, written by hand (no plotting crate): latency over time (per
//! second p50 and p99, by intended send time, every run one after the other), completions per
//! second under it, and the latency distribution by percentile (one curve per run). Opens in
//! any browser.

use std::fmt::Write;

use super::{
    driver::Pace,
    progress::short,
    report::{Report, Role, RunReport, ms},
};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const P50: &str = "#1f77b4";
const P99: &str = "#d62728";
/// Most curves the distribution panel draws.
const MAX_CURVES: usize = 10;
/// Seconds between two runs on the time axis.
const GAP: f64 = 1.0;

/// A vertical band of the chart.
#[derive(Clone, Copy)]
struct Panel {
    top: f64,
    height: f64,
}

impl Panel {
    fn bottom(self) -> f64 {
        self.top + self.height
    }
}

/// A log-scale axis over whole decades covering `lo..=hi` (µs).
#[derive(Clone, Copy)]
struct LogAxis {
    lo: f64,
    hi: f64,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = u64>) -> Self {
        let (mut lo, mut hi) = (f64::MAX, 1.0f64);
        for v in values.filter(|&v| v > 0) {
            lo = lo.min(v as f64);
            hi = hi.max(v as f64);
        }
        let lo = if lo == f64::MAX { 10.0 } else { lo };
        LogAxis {
            lo: lo.log10().floor(),
            hi: hi.log10().ceil().max(lo.log10().floor() + 1.0),
        }
    }

    /// Pixel y of `v` µs in `panel`.
    fn y(self, panel: Panel, v: u64) -> f64 {
        let f = ((v.max(1) as f64).log10() - self.lo) / (self.hi - self.lo);
        panel.bottom() - f.clamp(0.0, 1.0) * panel.height
    }
}

/// The chart of `report`, titled `title`.
pub fn render(report: &Report, title: &str) -> String {
    let time = Panel {
        top: 70.0,
        height: 260.0,
    };
    let tput = Panel {
        top: 380.0,
        height: 90.0,
    };
    let dist = Panel {
        top: 530.0,
        height: 280.0,
    };
    let curves = curves(report);
    let height = dist.bottom() + 60.0 + 18.0 * curves.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    text(&mut svg, LEFT, 24.0, 16.0, "start", &escape(title));
    timeline(&mut svg, report, time, tput);
    distribution(&mut svg, report, &curves, dist);
    svg += "</svg>\n";
    svg
}

/// The runs the distribution panel draws: all but probes, or the telling ones when many.
fn curves(report: &Report) -> Vec<usize> {
    let runs: Vec<usize> = (0..report.runs.len())
        .filter(|&i| report.runs[i].role != Role::Probe && !report.runs[i].distribution.is_empty())
        .collect();
    if runs.len() <= MAX_CURVES {
        return runs;
    }
    let is_peak = |r: &RunReport| {
        report.peaks.iter().any(|p| {
            p.target == r.target && matches!(r.pace, Pace::Open { rate } if rate == p.rate)
        })
    };
    let mut chosen: Vec<usize> = runs
        .iter()
        .copied()
        .filter(|&i| {
            let r = &report.runs[i];
            r.role != Role::Step || is_peak(r)
        })
        .take(MAX_CURVES)
        .collect();
    for &i in runs.iter().rev() {
        if chosen.len() >= MAX_CURVES {
            break;
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen
}

fn timeline(svg: &mut String, report: &Report, time: Panel, tput: Panel) {
    let spans: Vec<f64> = report
        .runs
        .iter()
        .map(|r| {
            (r.seconds.len() as f64)
                .max(r.duration.as_secs_f64())
                .max(1.0)
        })
        .collect();
    let total = spans.iter().sum::<f64>() + GAP * spans.len().saturating_sub(1) as f64;
    let x = |t: f64| LEFT + t / total.max(1.0) * (WIDTH - LEFT - RIGHT);
    let axis = LogAxis::covering(
        report
            .runs
            .iter()
            .flat_map(|r| r.seconds.iter().flat_map(|s| [s.p50, s.p99, s.max]))
            .chain([report.p99_bound_us]),
    );
    let top_rate = top_rate(report);
    let head = "Latency over time: p50 and p99 of each second's requests, from their intended \
                send time (max as dots)";
    text(svg, LEFT, time.top - 26.0, 13.0, "start", head);
    log_grid(svg, axis, time);
    let bound_y = axis.y(time, report.p99_bound_us);
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{bound_y:.1}\" y2=\"{bound_y:.1}\" \
         stroke=\"{P99}\" stroke-dasharray=\"6 4\" stroke-width=\"1\" opacity=\"0.6\"/>",
        WIDTH - RIGHT
    );
    let bound = format!("p99 bound {}", ms(report.p99_bound_us));
    text(svg, WIDTH - RIGHT, bound_y - 4.0, 11.0, "end", &bound);
    let tput_head = "Completed requests per second (dashed: the rate asked for)";
    text(svg, LEFT, tput.top - 10.0, 13.0, "start", tput_head);
    linear_grid(svg, top_rate, tput);
    let mut t0 = 0.0;
    let mut starts = Vec::with_capacity(spans.len());
    for (i, (run, span)) in report.runs.iter().zip(&spans).enumerate() {
        starts.push(t0);
        segment(svg, i, run, t0, *span, &x, axis, time, tput, top_rate);
        t0 += span + GAP;
    }
    target_brackets(svg, report, &starts, &spans, &x, time.top - 4.0);
    legend_line(svg, LEFT + 10.0, time.top + 14.0, P50, "p50");
    legend_line(svg, LEFT + 70.0, time.top + 14.0, P99, "p99");
    axis_title(
        svg,
        tput.bottom() + 30.0,
        "seconds (runs one after another, separated by a gap)",
    );
}

/// The throughput panel's top: the highest second or asked rate, plus a tenth.
fn top_rate(report: &Report) -> f64 {
    report
        .runs
        .iter()
        .flat_map(|r| {
            let rate = match r.pace {
                Pace::Open { rate } => rate,
                Pace::Closed { .. } => 0.0,
            };
            r.seconds.iter().map(|s| s.completed as f64).chain([rate])
        })
        .fold(1.0f64, f64::max)
        * 1.1
}

#[allow(clippy::too_many_arguments)]
fn segment(
    svg: &mut String,
    i: usize,
    run: &RunReport,
    t0: f64,
    span: f64,
    x: &dyn Fn(f64) -> f64,
    axis: LogAxis,
    time: Panel,
    tput: Panel,
    top_rate: f64,
) {
    let (x0, x1) = (x(t0), x(t0 + span));
    let _ = writeln!(
        svg,
        "<rect x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\" opacity=\"0.05\"/>",
        time.top,
        x1 - x0,
        tput.bottom() - time.top,
        if i.is_multiple_of(2) { "#000" } else { "#fff" }
    );
    let at = |t: usize| x(t0 + t as f64 + 0.5);
    let points = |f: &dyn Fn(&super::report::Second) -> u64| -> String {
        run.seconds
            .iter()
            .filter(|s| s.p50 > 0)
            .map(|s| format!("{:.1},{:.1}", at(s.t), axis.y(time, f(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    polyline(svg, &format!("p50-{i}"), P50, 1.5, &points(&|s| s.p50));
    polyline(svg, &format!("p99-{i}"), P99, 1.5, &points(&|s| s.p99));
    for s in run.seconds.iter().filter(|s| s.max > 0) {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"#999\"/>",
            at(s.t),
            axis.y(time, s.max)
        );
    }
    let y = |v: f64| tput.bottom() - (v / top_rate).clamp(0.0, 1.0) * tput.height;
    let done: Vec<String> = run
        .seconds
        .iter()
        .map(|s| format!("{:.1},{:.1}", at(s.t), y(s.completed as f64)))
        .collect();
    polyline(svg, &format!("tput-{i}"), "#2ca02c", 1.5, &done.join(" "));
    if let Pace::Open { rate } = run.pace {
        let _ = writeln!(
            svg,
            "<line x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#555\" \
             stroke-dasharray=\"4 3\"/>",
            y(rate)
        );
    }
}

/// A bracket over each stretch of consecutive runs against one target, named (with the pace
/// when the stretch is a single run).
fn target_brackets(
    svg: &mut String,
    report: &Report,
    starts: &[f64],
    spans: &[f64],
    x: &dyn Fn(f64) -> f64,
    y: f64,
) {
    let runs = &report.runs;
    let mut first = 0;
    while first < runs.len() {
        let last = (first..runs.len())
            .take_while(|&i| runs[i].target == runs[first].target)
            .last()
            .unwrap_or(first);
        let (x0, x1) = (x(starts[first]), x(starts[last] + spans[last]));
        let _ = writeln!(
            svg,
            "<path d=\"M{x0:.1},{:.1} V{y:.1} H{x1:.1} V{:.1}\" fill=\"none\" stroke=\"#555\"/>",
            y + 4.0,
            y + 4.0
        );
        let name = match last > first {
            true => format!("{} {}", runs[first].target, runs[first].rpc),
            false => runs[first].title(),
        };
        text(
            svg,
            (x0 + x1) / 2.0,
            y - 3.0,
            11.0,
            "middle",
            &escape(&name),
        );
        first = last + 1;
    }
}

fn distribution(svg: &mut String, report: &Report, curves: &[usize], panel: Panel) {
    const NINES: f64 = 5.0;
    let x = |p: f64| {
        let nines = (-(1.0 - p / 100.0).max(1e-9).log10()).min(NINES);
        LEFT + nines / NINES * (WIDTH - LEFT - RIGHT)
    };
    let axis = LogAxis::covering(
        curves
            .iter()
            .flat_map(|&i| report.runs[i].distribution.iter().map(|d| d.1)),
    );
    let head = "Latency by percentile (whole run, from intended send time)";
    text(svg, LEFT, panel.top - 12.0, 13.0, "start", head);
    log_grid(svg, axis, panel);
    for (p, label) in [
        (0.0, "0%"),
        (90.0, "90%"),
        (99.0, "99%"),
        (99.9, "99.9%"),
        (99.99, "99.99%"),
        (99.999, "99.999%"),
    ] {
        let px = x(p);
        let _ = writeln!(
            svg,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
            panel.top,
            panel.bottom()
        );
        text(svg, px, panel.bottom() + 16.0, 11.0, "middle", label);
    }
    axis_title(svg, panel.bottom() + 32.0, "percentile");
    for (k, &i) in curves.iter().enumerate() {
        let run = &report.runs[i];
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<String> = run
            .distribution
            .iter()
            .filter(|d| d.0 < 100.0)
            .map(|&(p, v)| format!("{:.1},{:.1}", x(p), axis.y(panel, v)))
            .collect();
        polyline(svg, &format!("dist-{i}"), color, 2.0, &points.join(" "));
        let label = curve_label(run);
        let y = panel.bottom() + 56.0 + 18.0 * k as f64;
        legend_line(svg, LEFT, y, color, &escape(&label));
    }
}

/// A distribution curve's legend: the run, its rate and its percentiles.
fn curve_label(run: &RunReport) -> String {
    let p = run.primary();
    format!(
        "{}: achieved {}/s, p50 {}, p99 {}, p99.9 {}, max {}{}",
        run.title(),
        short(run.achieved),
        ms(p.p50),
        ms(p.p99),
        ms(p.p999),
        ms(p.max),
        if run.role == Role::Fixed || run.passed() || matches!(run.pace, Pace::Closed { .. }) {
            ""
        } else if run.sustained {
            " (p99 over bound)"
        } else {
            " (not sustained)"
        }
    )
}

fn log_grid(svg: &mut String, axis: LogAxis, panel: Panel) {
    let mut decade = axis.lo;
    while decade <= axis.hi + 1e-9 {
        let v = 10f64.powf(decade) as u64;
        let y = axis.y(panel, v);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            WIDTH - RIGHT
        );
        text(svg, LEFT - 6.0, y + 4.0, 11.0, "end", &micros_label(v));
        decade += 1.0;
    }
    frame(svg, panel);
}

fn linear_grid(svg: &mut String, top: f64, panel: Panel) {
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let y = panel.bottom() - panel.height * k as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>",
            WIDTH - RIGHT
        );
        text(
            svg,
            LEFT - 6.0,
            y + 4.0,
            11.0,
            "end",
            &format!("{}/s", short(v)),
        );
    }
    frame(svg, panel);
}

fn frame(svg: &mut String, panel: Panel) {
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>",
        panel.top,
        WIDTH - LEFT - RIGHT,
        panel.height
    );
}

/// `1ms`, `100µs`, `10s`.
fn micros_label(v: u64) -> String {
    match v {
        v if v >= 1_000_000 => format!("{}s", v / 1_000_000),
        v if v >= 1_000 => format!("{}ms", v / 1_000),
        v => format!("{v}µs"),
    }
}

fn polyline(svg: &mut String, id: &str, color: &str, width: f64, points: &str) {
    let _ = writeln!(
        svg,
        "<polyline id=\"{id}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" \
         stroke-linejoin=\"round\" points=\"{points}\"/>"
    );
}

fn legend_line(svg: &mut String, x: f64, y: f64, color: &str, label: &str) {
    let _ = writeln!(
        svg,
        "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" \
         stroke-width=\"3\"/>",
        x + 18.0
    );
    text(svg, x + 24.0, y + 4.0, 11.0, "start", label);
}

/// A horizontal axis's title, centred under the plot at `y`.
fn axis_title(svg: &mut String, y: f64, title: &str) {
    text(svg, (LEFT + WIDTH - RIGHT) / 2.0, y, 12.0, "middle", title);
}

fn text(svg: &mut String, x: f64, y: f64, size: f64, anchor: &str, body: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\">{body}</text>"
    );
}

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;
    use crate::{
        record::Percentiles,
        report::{Peak, Second},
    };

    fn run(rate: f64, role: Role, base: u64) -> RunReport {
        let seconds = (0..5)
            .map(|t| Second {
                t,
                completed: rate as u64,
                p50: base,
                p99: base * 4,
                max: base * 10,
            })
            .collect();
        RunReport {
            target: "service".into(),
            rpc: "ListNearby".into(),
            role,
            pace: Pace::Open { rate },
            duration: Duration::from_secs(5),
            planned: 5 * rate as u64,
            sent: 5 * rate as u64,
            unsent: 0,
            unfinished: 0,
            completed: 5 * rate as u64,
            ok: 5 * rate as u64,
            errors: BTreeMap::new(),
            achieved: rate,
            latency: [("ListNearby".to_string(), Percentiles::default())].into(),
            seconds,
            distribution: vec![
                (0.0, base),
                (50.0, base),
                (99.0, base * 4),
                (100.0, base * 10),
            ],
            sustained: true,
            within_bound: true,
            cpu: BTreeMap::new(),
        }
    }

    /// Checks that tags nest and close, attributes are quoted, and text has no raw `<` or `&`.
    fn well_formed(svg: &str) -> Result<(), String> {
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let between = &rest[..open];
            if between.contains('>')
                || between
                    .replace("&amp;", "")
                    .replace("&lt;", "")
                    .replace("&gt;", "")
                    .replace("&quot;", "")
                    .contains('&')
            {
                return Err(format!("bad text {between:?}"));
            }
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(top) if top == name => {}
                    top => return Err(format!("</{name}> closes {top:?}")),
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            rest = &rest[close + 1..];
        }
        match stack.is_empty() && rest.trim().is_empty() {
            true => Ok(()),
            false => Err(format!("left open: {stack:?}")),
        }
    }

    #[test]
    fn the_chart_is_well_formed_and_holds_every_series() {
        let report = Report {
            runs: vec![run(1000.0, Role::Step, 300), run(2000.0, Role::Step, 900)],
            p99_bound_us: 5_000,
            ..Report::default()
        };
        let svg = render(&report, "W1 <100k> & friends");
        well_formed(&svg).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        for id in [
            "p50-0", "p99-0", "tput-0", "dist-0", "p50-1", "p99-1", "dist-1",
        ] {
            let found = svg.find(&format!("id=\"{id}\"")).expect(id);
            let points = &svg[found..svg[found..].find("/>").unwrap() + found];
            assert!(points.matches(',').count() >= 3, "{id}: {points}");
        }
        assert!(svg.contains("W1 &lt;100k&gt; &amp; friends"));
        assert!(svg.contains("p99 bound 5.00ms"));
        assert!(svg.contains("1ms") && svg.contains("100µs"));
    }

    #[test]
    fn with_many_runs_the_distribution_keeps_peaks_and_the_latest() {
        let mut runs: Vec<RunReport> = (1..=14)
            .map(|k| run(k as f64 * 100.0, Role::Step, 100 * k))
            .collect();
        runs.push(run(300.0, Role::HalfPeak, 100));
        let report = Report {
            runs,
            peaks: vec![Peak::held("service", "ListNearby", 100.0)],
            p99_bound_us: 5_000,
            ..Report::default()
        };
        let chosen = curves(&report);
        assert_eq!(chosen.len(), MAX_CURVES);
        assert!(chosen.contains(&0) && chosen.contains(&14), "{chosen:?}");
        well_formed(&render(&report, "many")).unwrap();
    }

    #[test]
    fn an_empty_report_still_renders() {
        well_formed(&render(&Report::default(), "nothing")).unwrap();
    }
}
