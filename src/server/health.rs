//! Health that does not flap (contract §4.6): readiness (every vicinity service and `""`) goes
//! NOT_SERVING once [`FAILS_TO_NOT_SERVING`] of the last [`FAILS_WINDOW`] store checks failed
//! and back after [`PASSES_TO_SERVING`] good ones in a row, so one slow check under load does
//! not pull a node out of its balancer, and a store failing most checks does not stay in it; it goes NOT_SERVING at once when shutdown starts, before the drain.
//! [`LIVENESS`] is SERVING while the process serves, whatever the stores do: a liveness probe
//! on it does not restart every pod during a store outage.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};

use super::SERVICE_NAMES;
use crate::service::Vicinity;

/// How often readiness is checked (each check is bounded by the store timeout).
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// Failed checks among the last [`FAILS_WINDOW`] before readiness goes NOT_SERVING: a real
/// outage shows within 3 × (interval + store timeout), 4.5 s with the defaults (1.5 s when
/// the store refuses connections outright), and a store failing 2 checks of every 3 shows
/// too (with a streak, one pass between failures kept it SERVING).
pub const FAILS_TO_NOT_SERVING: u32 = 3;
/// How many recent checks [`FAILS_TO_NOT_SERVING`] counts in.
pub const FAILS_WINDOW: u32 = 5;
/// Consecutive good checks before readiness is SERVING again (about a second).
pub const PASSES_TO_SERVING: u32 = 2;
/// The health service name for liveness probes.
pub const LIVENESS: &str = "liveness";

/// Readiness with hysteresis: the state, the recent failures and the streak of passes.
#[derive(Debug, Default)]
struct Readiness {
    serving: Option<bool>,
    /// The last [`FAILS_WINDOW`] checks, newest in the lowest bit, 1 for a failure.
    recent: u32,
    /// Good checks in a row.
    passes: u32,
}

impl Readiness {
    /// Takes one check's outcome; the new state when it changes. The first check decides at
    /// once (no history to weigh it against).
    fn observe(&mut self, ok: bool) -> Option<bool> {
        let window = (1 << FAILS_WINDOW) - 1;
        self.recent = ((self.recent << 1) | u32::from(!ok)) & window;
        self.passes = if ok { self.passes + 1 } else { 0 };
        let next = match self.serving {
            None => ok,
            Some(true) => self.recent.count_ones() < FAILS_TO_NOT_SERVING,
            Some(false) => self.passes >= PASSES_TO_SERVING,
        };
        if self.serving == Some(next) {
            return None;
        }
        self.serving = Some(next);
        // A new state starts a new count of what would undo it.
        self.recent = 0;
        Some(next)
    }
}

/// This server's readiness as its HTTP probe reads it (`/readyz`): set with the gRPC health
/// service's, so both always agree, and kept per server (the `vicinity_ready` gauge is the
/// process's).
#[derive(Clone, Debug, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    /// Whether readiness is SERVING.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Readiness writes, closed for good when shutdown starts: a check that finishes during the
/// drain cannot report SERVING again (the write and the closing take one lock).
#[derive(Clone)]
pub struct Gate {
    closed: Arc<tokio::sync::Mutex<bool>>,
    ready: Ready,
}

impl Gate {
    /// A gate whose writes `ready` follows too.
    pub fn new(ready: Ready) -> Self {
        Self {
            closed: Arc::default(),
            ready,
        }
    }

    /// Readiness NOT_SERVING until the first check of the stores decides it.
    pub async fn not_ready_yet(&self, reporter: &HealthReporter) {
        self.set(reporter, ServingStatus::NotServing).await;
    }

    /// Sets readiness to `status` unless the gate is closed.
    async fn set(&self, reporter: &HealthReporter, status: ServingStatus) -> bool {
        let closed = self.closed.lock().await;
        if !*closed {
            self.set_readiness(reporter, status).await;
        }
        !*closed
    }

    /// Readiness NOT_SERVING, for good.
    pub async fn close(&self, reporter: &HealthReporter) {
        let mut closed = self.closed.lock().await;
        *closed = true;
        self.set_readiness(reporter, ServingStatus::NotServing)
            .await;
    }

    /// Sets readiness (every service and `""`, the probe's and the gauge) to `status`.
    async fn set_readiness(&self, reporter: &HealthReporter, status: ServingStatus) {
        let serving = status == ServingStatus::Serving;
        self.ready.0.store(serving, Ordering::Release);
        crate::telemetry::metrics::get()
            .ready
            .set(i64::from(serving));
        for name in SERVICE_NAMES.iter().chain(&[""]) {
            reporter.set_service_status(*name, status).await;
        }
    }
}

/// Reports [`LIVENESS`] SERVING: the process serves (from the start, while it waits for its
/// stores too, as `/livez` does).
async fn alive(reporter: &HealthReporter) {
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
}

/// The health service at start: liveness SERVING, readiness NOT_SERVING until the first
/// store check says otherwise (tonic-health reports "" SERVING from the start, and a probe
/// must not route calls to a node whose stores nobody has checked).
pub async fn at_start(ready: Ready) -> (HealthReporter, HealthServer<impl Health>, Gate) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let gate = Gate::new(ready);
    gate.not_ready_yet(&reporter).await;
    alive(&reporter).await;
    (reporter, health, gate)
}

/// Checks the stores every [`HEALTH_INTERVAL`] and reports readiness with hysteresis.
pub async fn watch(svc: Vicinity, reporter: HealthReporter, gate: Gate) {
    let mut readiness = Readiness::default();
    loop {
        let ok = svc.ready().await.is_ok();
        if let Some(serving) = readiness.observe(ok) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if !gate.set(&reporter, status).await {
                return;
            }
            tracing::info!(serving, "readiness changed");
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_goes_after_three_failures_of_five_and_comes_back_after_two_passes() {
        let mut r = Readiness::default();
        assert_eq!(r.observe(true), Some(true), "the first check decides");
        for ok in [false, true, true, true, false, true, true, true, true] {
            assert_eq!(
                r.observe(ok),
                None,
                "a failure now and then is not an outage"
            );
        }
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), Some(false), "three failures in a row");
        assert_eq!(r.observe(true), None);
        assert_eq!(r.observe(true), Some(true), "two good checks in a row");
    }

    #[test]
    fn a_store_failing_two_checks_of_three_is_not_ready() {
        let mut r = Readiness::default();
        assert_eq!(r.observe(true), Some(true));
        let pattern = [false, false, true].iter().cycle().take(30);
        let changes: Vec<bool> = pattern.filter_map(|ok| r.observe(*ok)).collect();
        assert_eq!(changes, [false], "it goes once and never comes back");
    }
}
