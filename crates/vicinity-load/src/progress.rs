//! Progress on stderr: a progress bar (indicatif) on a terminal, a plain line every few
//! seconds otherwise (so a log file does not fill with redraws).

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// Counters the driver updates and the progress line reads.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Requests completed.
    pub done: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
}

impl Live {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the progress shows at one moment: how far along (`done` of `total`, in the run's
/// unit: milliseconds or requests) and a line of figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// How far along.
    pub done: u64,
    /// Of how much.
    pub total: u64,
    /// The figures.
    pub text: String,
}

/// Renders a frame from the counters and the time since the start.
pub type Render = Box<dyn Fn(&Live, Duration) -> Frame + Send + Sync>;

/// A progress line being redrawn until [`Progress::finish`] (or drop).
#[derive(Debug)]
pub struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts redrawing `render`'s line on stderr; `enabled = false` draws nothing.
    pub fn start(live: Arc<Live>, render: Render, enabled: bool) -> Self {
        if !enabled {
            return Progress { task: None };
        }
        let tty = std::io::stderr().is_terminal();
        let started = Instant::now();
        let task = if tty {
            let bar = ProgressBar::new(1).with_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let frame = render(&live, started.elapsed());
                    bar.set_length(frame.total.max(1));
                    bar.set_position(frame.done.min(frame.total));
                    bar.set_message(frame.text);
                }
            })
        } else {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let line = render(&live, started.elapsed()).text;
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                    let _ = err.flush();
                }
            })
        };
        Progress { task: Some(task) }
    }

    /// Stops redrawing and ends the line.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting drops the bar, which clears itself from the terminal.
            task.abort();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `12.3k` style counts for the progress line.
pub fn short(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_counts() {
        assert_eq!(short(950.0), "950");
        assert_eq!(short(12_345.0), "12.3k");
        assert_eq!(short(1_234_567.0), "1.23M");
    }
}
