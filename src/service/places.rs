//! The sensitive-place policy where a position enters (contract §4.8): UpdateLocation and Shake
//! place every snapped position through it before anything is stored or matched.

use h3o::CellIndex;

use super::Vicinity;
use crate::{places::Placement, telemetry::metrics};

impl Vicinity {
    /// Where the place policy in force puts `snapped`.
    pub(super) fn place(&self, snapped: CellIndex) -> Placement {
        self.deps.places.place(snapped)
    }

    /// Counts what the policy did to a position of a call it admitted (by category, never a
    /// position or a user): a call refused (consent, limits) counts nothing.
    pub(super) fn count_placed(&self, placement: Placement) {
        if let Some((category, action)) = placement.label() {
            metrics::get()
                .places_placed
                .with_label_values(&[category, action])
                .inc();
        }
    }
}

impl Vicinity {
    /// Announces the place policy in force (audit trail, metrics); at start.
    pub fn announce_places(&self) {
        if let Some(policy) = self.deps.places.current() {
            super::audit::places_in_force(&policy);
        }
    }

    /// Reads the place policy's file again and puts it in force (on SIGHUP). A policy that
    /// cannot be read, or is compiled for another grid, is refused and the one in force
    /// stays; the refusal is logged and counted. Calls in flight keep the policy they read.
    pub async fn reload_places(&self) {
        // Reading, hashing and indexing a large policy takes a while: not on a runtime worker.
        let (places, resolution) = (self.deps.places.clone(), self.deps.grid.resolution());
        let reloaded = tokio::task::spawn_blocking(move || places.reload_checked(resolution)).await;
        let Ok(Some(reloaded)) = reloaded else {
            return;
        };
        match reloaded {
            Ok(policy) => super::audit::places_in_force(&policy),
            Err(e) => {
                metrics::get().places_reload_failures.inc();
                tracing::error!(error = %e, "--places: reload refused, the policy in force stays");
            }
        }
    }
}
