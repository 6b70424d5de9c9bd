//! Health that does not flap (SPEC §4.6): readiness (every vicinity service and `""`) goes
//! NOT_SERVING only after [`FAILS_TO_NOT_SERVING`] consecutive failed store checks and back
//! after [`PASSES_TO_SERVING`] good ones, so one slow check under load does not pull a node
//! out of its balancer; it goes NOT_SERVING at once when shutdown starts, before the drain.
//! [`LIVENESS`] is SERVING while the process serves, whatever the stores do: a liveness probe
//! on it does not restart every pod during a store outage.

use std::{sync::Arc, time::Duration};

use tonic_health::{ServingStatus, server::HealthReporter};

use super::SERVICE_NAMES;
use crate::service::Vicinity;

/// How often readiness is checked (each check is bounded by the store timeout).
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// Consecutive failed checks before readiness goes NOT_SERVING: a real outage shows within
/// 3 × (interval + store timeout), 4.5 s with the defaults (1.5 s when the store refuses
/// connections outright).
pub const FAILS_TO_NOT_SERVING: u32 = 3;
/// Consecutive good checks before readiness is SERVING again (about a second).
pub const PASSES_TO_SERVING: u32 = 2;
/// The health service name for liveness probes.
pub const LIVENESS: &str = "liveness";

/// Readiness with hysteresis: the state and the streak of checks that disagree with it.
#[derive(Debug, Default)]
struct Readiness {
    serving: Option<bool>,
    streak: u32,
}

impl Readiness {
    /// Takes one check's outcome; the new state when it changes. The first check decides at
    /// once (no history to weigh it against).
    fn observe(&mut self, ok: bool) -> Option<bool> {
        let Some(serving) = self.serving else {
            self.serving = Some(ok);
            return Some(ok);
        };
        if ok == serving {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok {
            PASSES_TO_SERVING
        } else {
            FAILS_TO_NOT_SERVING
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.serving = Some(ok);
        Some(ok)
    }
}

/// Sets readiness (every service and `""`) to `status`.
async fn set_readiness(reporter: &HealthReporter, status: ServingStatus) {
    let ready = i64::from(status == ServingStatus::Serving);
    crate::telemetry::metrics::get().ready.set(ready);
    for name in SERVICE_NAMES.iter().chain(&[""]) {
        reporter.set_service_status(*name, status).await;
    }
}

/// Readiness NOT_SERVING until the first check of the stores decides it.
pub async fn not_ready_yet(reporter: &HealthReporter) {
    set_readiness(reporter, ServingStatus::NotServing).await;
}

/// Readiness writes, closed for good when shutdown starts: a check that finishes during the
/// drain cannot report SERVING again (the write and the closing take one lock).
#[derive(Clone, Default)]
pub struct Gate(Arc<tokio::sync::Mutex<bool>>);

impl Gate {
    /// Sets readiness to `status` unless the gate is closed.
    async fn set(&self, reporter: &HealthReporter, status: ServingStatus) -> bool {
        let closed = self.0.lock().await;
        if !*closed {
            set_readiness(reporter, status).await;
        }
        !*closed
    }

    /// Readiness NOT_SERVING, for good.
    pub async fn close(&self, reporter: &HealthReporter) {
        let mut closed = self.0.lock().await;
        *closed = true;
        set_readiness(reporter, ServingStatus::NotServing).await;
    }
}

/// Checks the stores every [`HEALTH_INTERVAL`] and reports readiness with hysteresis; reports
/// [`LIVENESS`] SERVING first.
pub async fn watch(svc: Vicinity, reporter: HealthReporter, gate: Gate) {
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
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
    fn readiness_needs_a_streak_to_change_and_a_good_check_resets_the_count() {
        let mut r = Readiness::default();
        assert_eq!(r.observe(true), Some(true), "the first check decides");
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), None);
        assert_eq!(
            r.observe(true),
            None,
            "one good check between resets the streak"
        );
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), Some(false), "three failures in a row");
        assert_eq!(r.observe(true), None);
        assert_eq!(r.observe(true), Some(true), "two good checks in a row");
    }
}
