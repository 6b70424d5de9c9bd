//! Privacy operations (SPEC §3 PrivacyService): clear, export, forget.

use tracing::instrument;

use super::{
    ServiceResult, Vicinity,
    audit::{self, Action},
};
use crate::{
    domain::{ConsentEvent, ConsentRecord, Feature, UserId, shake::ShakeMatch},
    storage::LocationEntry,
};

/// Everything held about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Current consent per feature.
    pub consents: Vec<ConsentRecord>,
    /// Every consent event.
    pub consent_history: Vec<ConsentEvent>,
    /// One entry per feature the user is in (left or not, until purged).
    pub locations: Vec<LocationEntry>,
    /// Shake matches (partner and band).
    pub shake_history: Vec<ShakeMatch>,
}

impl Vicinity {
    /// Purges the user's location data in `feature` (or every feature) at once; consent is
    /// unchanged. Idempotent.
    #[instrument(skip_all)]
    pub async fn clear_location(
        &self,
        user: &UserId,
        feature: Option<Feature>,
    ) -> ServiceResult<u32> {
        let features = feature.map_or(Feature::ALL.to_vec(), |f| vec![f]);
        let purged = self.purge(user, &features).await?;
        audit::record(Action::LocationCleared, user, feature, purged);
        Ok(purged)
    }

    /// Everything held about the user.
    #[instrument(skip_all)]
    pub async fn export(&self, user: &UserId) -> ServiceResult<Export> {
        let (consents, consent_history) = self.get_consent(user).await?;
        let mut locations = Vec::new();
        for feature in Feature::ALL {
            if let Some(entry) = self.deps.locations.get(feature, user).await? {
                locations.push(entry);
            }
        }
        let shake_history = self.deps.shakes.history(user).await?;
        Ok(Export {
            consents,
            consent_history,
            locations,
            shake_history,
        })
    }

    /// Deletes everything about the user, consent history included. Location first, so a
    /// failure part-way leaves consent (which gates everything) and a retry finishes the job.
    #[instrument(skip_all)]
    pub async fn forget(&self, user: &UserId) -> ServiceResult<(u32, u32)> {
        let purged = self.purge(user, &Feature::ALL).await?;
        let events = self.deps.consents.forget(user).await?;
        audit::record(Action::UserForgotten, user, None, purged);
        Ok((purged, events))
    }
}
