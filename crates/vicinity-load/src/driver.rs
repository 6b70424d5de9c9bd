//! The driver: sends a target's requests open-loop at a rate (or closed-loop with a fixed
//! number of callers) and records every completion.
//!
//! Open loop. Request `i` is *intended* for `start + i / rate`. A dispatcher thread sleeps
//! (with the OS timer, about 60 µs precise, where tokio's timer rounds to 1 ms) until each
//! intended time and hands the request to the runtime; at most `max_in_flight` are
//! outstanding, and when none is free the dispatcher waits. Latency is measured from the
//! intended time, so a slow service or a harness that falls behind shows as latency instead
//! of silently lowering the rate (no coordinated omission). Requests still unsent `grace`
//! after the schedule's end are given up and counted as `unsent`: the rate was not sustained.
//!
//! Closed loop. `concurrency` callers each send the next request when the previous answers;
//! latency is from the actual send. Used for latency at concurrency 1, for the capacity probe
//! that seeds the peak search, and for loading a population.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    progress::{Frame, Live, Progress, Render},
    record::{Outcome, Recorder},
};

/// Something the driver can send requests to: a gRPC method, a Redis command.
pub trait Target: Send + Sync + 'static {
    /// The RPC the run is about (its report's latency series).
    fn primary(&self) -> &'static str;
    /// Request number `request` of the run. The future must end by itself (each target
    /// bounds its calls with a timeout).
    fn call(&self, request: u64) -> BoxFuture<'static, Outcome>;
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At `rate` requests per second, whatever the answers do.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// `concurrency` callers, each waiting for its answer before sending again.
    Closed {
        /// Callers.
        concurrency: usize,
    },
}

/// One run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The pacing.
    pub pace: Pace,
    /// How long the schedule lasts (closed loop: how long callers keep sending).
    pub duration: Duration,
    /// At most this many requests outstanding (open loop).
    pub max_in_flight: usize,
    /// How long past the schedule's end requests may still go out.
    pub grace: Duration,
    /// How long to wait for the answers of requests in flight once sending has stopped.
    pub drain: Duration,
    /// Closed loop: stop after this many requests (requests `0..limit`).
    pub limit: Option<u64>,
}

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    /// Every completion.
    pub recorder: Recorder,
    /// Requests the schedule planned (open loop) or that were started (closed loop).
    pub planned: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests never sent because the harness was too far behind.
    pub unsent: u64,
    /// Requests sent whose answer had not come when the run was closed.
    pub unfinished: u64,
}

/// Runs `spec` against `target`, drawing a progress line headed `label` when `progress`.
pub async fn drive(
    target: Arc<dyn Target>,
    spec: &RunSpec,
    label: &str,
    progress: bool,
) -> RunOutcome {
    let start = Instant::now() + Duration::from_millis(5);
    let recorder = Arc::new(Mutex::new(Recorder::new(start)));
    let live = Arc::new(Live::default());
    let line = Progress::start(
        live.clone(),
        render(label, spec, target.primary(), recorder.clone()),
        progress,
    );
    let shared = Shared {
        target,
        recorder: recorder.clone(),
        live: live.clone(),
    };
    let (planned, sent, unsent) = match spec.pace {
        Pace::Open { rate } => open_loop(shared, spec, rate, start).await,
        Pace::Closed { concurrency } => closed_loop(shared, spec, concurrency, start).await,
    };
    line.finish();
    let recorder = recorder.lock().expect("recorder lock").clone();
    let unfinished = sent.saturating_sub(recorder.completed());
    RunOutcome {
        recorder,
        planned,
        sent,
        unsent,
        unfinished,
    }
}

/// What every request task needs.
#[derive(Clone)]
struct Shared {
    target: Arc<dyn Target>,
    recorder: Arc<Mutex<Recorder>>,
    live: Arc<Live>,
}

impl Shared {
    /// Sends request `i`, records it against `intended` (or its actual send time).
    async fn send(&self, i: u64, intended: Option<Instant>) {
        Live::bump(&self.live.sent);
        let call = self.target.call(i);
        let intended = intended.unwrap_or_else(Instant::now);
        let outcome = call.await;
        let done = Instant::now();
        if outcome.error.is_some() {
            Live::bump(&self.live.errors);
        }
        Live::bump(&self.live.done);
        let mut recorder = self.recorder.lock().expect("recorder lock");
        recorder.record(intended, done, outcome);
    }
}

/// The open-loop schedule; returns (planned, sent, unsent).
async fn open_loop(shared: Shared, spec: &RunSpec, rate: f64, start: Instant) -> (u64, u64, u64) {
    let planned = (rate * spec.duration.as_secs_f64()).round() as u64;
    let slots = Arc::new(Semaphore::new(spec.max_in_flight));
    let give_up = start + spec.duration + spec.grace;
    let handle = tokio::runtime::Handle::current();
    let dispatcher = {
        let slots = slots.clone();
        tokio::task::spawn_blocking(move || {
            dispatch(shared, handle, slots, planned, rate, start, give_up)
        })
    };
    let sent = dispatcher.await.expect("the dispatcher does not panic");
    let all = u32::try_from(spec.max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::Instant::from_std(Instant::now() + spec.drain);
    let _ = tokio::time::timeout_at(drained, slots.acquire_many(all)).await;
    (planned, sent, planned - sent)
}

/// The dispatcher thread: sends request `i` at `start + i / rate` when a slot is free;
/// returns how many it sent before the schedule ended or `give_up` passed.
fn dispatch(
    shared: Shared,
    handle: tokio::runtime::Handle,
    slots: Arc<Semaphore>,
    planned: u64,
    rate: f64,
    start: Instant,
    give_up: Instant,
) -> u64 {
    for i in 0..planned {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let Some(slot) = wait_for_slot(&handle, &slots, give_up) else {
            return i;
        };
        if Instant::now() >= give_up {
            return i;
        }
        let shared = shared.clone();
        handle.spawn(async move {
            shared.send(i, Some(intended)).await;
            drop(slot);
        });
    }
    planned
}

fn wait_for_slot(
    handle: &tokio::runtime::Handle,
    slots: &Arc<Semaphore>,
    give_up: Instant,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    let deadline = tokio::time::Instant::from_std(give_up);
    let wait = tokio::time::timeout_at(deadline, slots.clone().acquire_owned());
    handle.block_on(wait).ok()?.ok()
}

/// `concurrency` callers until the duration ends or `limit` requests have started; returns
/// (planned, sent, unsent).
async fn closed_loop(
    shared: Shared,
    spec: &RunSpec,
    concurrency: usize,
    start: Instant,
) -> (u64, u64, u64) {
    let end = start + spec.duration;
    let next = Arc::new(AtomicU64::new(0));
    let limit = spec.limit.unwrap_or(u64::MAX);
    let callers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (shared, next) = (shared.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    shared.send(i, None).await;
                }
            })
        })
        .collect();
    for caller in callers {
        let _ = caller.await;
    }
    let started = next.load(Ordering::Relaxed).min(limit);
    let planned = spec.limit.unwrap_or(started);
    (planned, started, planned.saturating_sub(started))
}

fn render(
    label: &str,
    spec: &RunSpec,
    primary: &'static str,
    recorder: Arc<Mutex<Recorder>>,
) -> Render {
    let label = label.to_owned();
    let (total, limit) = (spec.duration.as_secs_f64(), spec.limit);
    Box::new(move |live: &Live, elapsed: Duration| {
        let (sent, done, errors) = (
            Live::get(&live.sent),
            Live::get(&live.done),
            Live::get(&live.errors),
        );
        let p99 = recorder
            .lock()
            .ok()
            .and_then(|r| r.recent_p99(primary, Instant::now()))
            .map_or_else(|| "-".into(), |d| format!("{:.2}ms", d.as_secs_f64() * 1e3));
        let rate = super::progress::short(done as f64 / elapsed.as_secs_f64().max(1e-3));
        let (position, at, of) = match limit {
            Some(n) => (format!("{done}/{n}"), done, n),
            None => (
                format!("{:.0}/{total:.0}s", elapsed.as_secs_f64().min(total)),
                elapsed.as_millis() as u64,
                (total * 1e3) as u64,
            ),
        };
        Frame {
            done: at,
            total: of,
            text: format!(
                "{label}: {position}  {rate}/s  in flight {}  errors {errors}  p99 {p99}",
                sent - done
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after a fixed time, one at a time when the driver allows only one in flight.
    struct Slow(Duration);

    impl Target for Slow {
        fn primary(&self) -> &'static str {
            "slow"
        }

        fn call(&self, _: u64) -> BoxFuture<'static, Outcome> {
            let wait = self.0;
            Box::pin(async move {
                tokio::time::sleep(wait).await;
                Outcome::ok("slow")
            })
        }
    }

    fn open(rate: f64, duration_ms: u64, max_in_flight: usize) -> RunSpec {
        RunSpec {
            pace: Pace::Open { rate },
            duration: Duration::from_millis(duration_ms),
            max_in_flight,
            grace: Duration::from_secs(3),
            drain: Duration::from_secs(3),
            limit: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_that_keeps_up_shows_its_own_latency() {
        let slow = Arc::new(Slow(Duration::from_millis(5)));
        let run = drive(slow, &open(200.0, 500, 64), "test", false).await;
        assert_eq!((run.planned, run.sent, run.unsent), (100, 100, 0));
        let h = &run.recorder.rpcs["slow"].latency;
        assert_eq!(h.len(), 100);
        assert!(
            h.value_at_quantile(0.5) < 15_000,
            "{}",
            h.value_at_quantile(0.5)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_that_falls_behind_shows_the_wait_in_latency() {
        // 40 requests meant 10 ms apart, each taking 30 ms, one at a time: request i is
        // answered near 30 (i + 1) ms while it was meant for 10 i ms, so the last waits
        // about 810 ms although the service never takes more than 30.
        let slow = Arc::new(Slow(Duration::from_millis(30)));
        let run = drive(slow, &open(100.0, 400, 1), "test", false).await;
        assert_eq!((run.sent, run.unsent), (40, 0));
        let h = &run.recorder.rpcs["slow"].latency;
        assert!(h.max() > 700_000, "max {} µs", h.max());
        assert!(h.value_at_quantile(0.5) > 300_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_still_unsent_after_the_grace_are_counted_unsent() {
        let slow = Arc::new(Slow(Duration::from_millis(100)));
        let mut spec = open(100.0, 200, 1);
        spec.grace = Duration::from_millis(300);
        let run = drive(slow, &spec, "test", false).await;
        assert_eq!(run.planned, 20);
        assert!(run.sent <= 6 && run.unsent == 20 - run.sent, "{run:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_loop_stops_at_its_limit() {
        let slow = Arc::new(Slow(Duration::from_millis(1)));
        let spec = RunSpec {
            pace: Pace::Closed { concurrency: 4 },
            duration: Duration::from_secs(5),
            max_in_flight: 4,
            grace: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            limit: Some(50),
        };
        let run = drive(slow, &spec, "test", false).await;
        assert_eq!((run.planned, run.sent, run.unsent), (50, 50, 0));
        assert_eq!(run.recorder.completed(), 50);
    }
}
