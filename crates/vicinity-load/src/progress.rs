//! The progress line on stderr: redrawn in place with `\r` on a terminal, a plain line every
//! few seconds otherwise (so a log file does not fill with redraws).

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

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

/// Renders the line from the counters and the time since the start.
pub type Render = Box<dyn Fn(&Live, Duration) -> String + Send + Sync>;

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
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let line = render(&live, started.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = match tty {
                    true => write!(err, "\r{line:<100}"),
                    false => writeln!(err, "{line}"),
                };
                let _ = err.flush();
            }
        });
        Progress { task: Some(task) }
    }

    /// Stops redrawing and ends the line.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if std::io::stderr().is_terminal() {
                eprint!("\r{:<100}\r", "");
            }
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
