//! The audit trail (SPEC §4.5): every consent change, clear, forget and purge, as structured
//! log events under the `vicinity::audit` target. Never a coordinate, cell or distance.

use crate::domain::{Feature, UserId};

/// An auditable action.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    ConsentGranted,
    ConsentWithdrawn,
    LocationCleared,
    UserForgotten,
    LeftShake,
    OwedPurgeFinished,
    UpdateUndone,
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
            Action::UpdateUndone => "update_undone",
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
}
