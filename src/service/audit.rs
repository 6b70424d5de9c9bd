//! The audit trail (contract §4.5): every consent change, clear, forget and purge, as structured
//! log events under the `vicinity::audit` target, written here and nowhere else, so they are
//! the same on every backend; each purge also counts in `vicinity_purged_entries_total` by
//! cause. Never a coordinate, cell or distance.

use crate::{
    domain::{Feature, UserId},
    storage::Expired,
    telemetry::metrics,
};

/// An auditable action.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    ConsentGranted,
    ConsentWithdrawn,
    LocationCleared,
    UserForgotten,
    LeftShake,
    OwedPurgeFinished,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::ConsentGranted => "consent_granted",
            Action::ConsentWithdrawn => "consent_withdrawn",
            Action::LocationCleared => "location_cleared",
            Action::UserForgotten => "user_forgotten",
            Action::LeftShake => "left_shake",
            Action::OwedPurgeFinished => "owed_purge_finished",
        }
    }

    /// Whether the action is a change of consent records, done (and seen by every read) before
    /// its purge runs.
    pub(crate) fn changes_consent(self) -> bool {
        matches!(self, Action::ConsentWithdrawn | Action::UserForgotten)
    }

    /// The purge cause this action counts under (`None`: it purges nothing).
    fn cause(self) -> Option<&'static str> {
        match self {
            Action::ConsentGranted => None,
            Action::ConsentWithdrawn => Some("withdrawal"),
            Action::LocationCleared => Some("clear"),
            Action::UserForgotten => Some("forget"),
            Action::LeftShake => Some("leave_shake"),
            Action::OwedPurgeFinished => Some("owed"),
        }
    }
}

/// Records `action` on `user` (for `feature`, when it applies) that removed `purged` entries.
pub(crate) fn record(action: Action, user: &UserId, feature: Option<Feature>, purged: u32) {
    tracing::info!(
        target: "vicinity::audit",
        action = action.as_str(),
        user_id = %user,
        feature = feature.map_or("all", Feature::as_str),
        purged_entries = purged,
        "audit"
    );
    if let Some(cause) = action.cause() {
        metrics::purged(cause, purged);
    }
}

/// Records a sweep's purge of what was past its deadline (no user: one event per sweep that
/// removed something), with the worst lag behind a deadline (each lag is in the histogram).
pub(crate) fn expired(expired: &Expired) {
    if expired.entries == 0 {
        return;
    }
    tracing::info!(
        target: "vicinity::audit",
        action = "purge",
        cause = "deadline",
        purged_entries = expired.entries,
        worst_lag_ms = expired.worst_lag.as_millis() as u64,
        "audit"
    );
    metrics::purged("deadline", expired.entries);
}

/// A place policy put in force, at start or on reload: its version and size in the trail and
/// the metrics (contract §4.8).
pub(crate) fn places_in_force(policy: &crate::places::Policy) {
    tracing::info!(
        target: "vicinity::audit",
        action = "places_in_force",
        version = policy.version(),
        cells = policy.cells(),
        "audit"
    );
    let metrics = metrics::get();
    metrics.places_cells.set(policy.cells() as i64);
    metrics.places_version.reset();
    metrics
        .places_version
        .with_label_values(&[policy.version()])
        .set(1);
}
