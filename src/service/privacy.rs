//! Privacy operations (contract §3 PrivacyService): clear, export, forget.

use tracing::instrument;

use super::{ServiceResult, Vicinity, audit::Action};
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
        let audit = (Action::LocationCleared, feature);
        let ((), purged) = self
            .purge_after(user, &features, async { Ok(()) }, audit)
            .await?;
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

    /// Deletes everything about the user, consent history included, as a purge that
    /// finishes (`purge_after`): with consent gone first every read of the user is refused
    /// (undecided fails closed) while the purge runs, and a sweep finishes a purge cut short.
    /// The user's limit state goes too (it names them; it holds no location and would expire
    /// within its period anyway, so a failure there fails the call but owes nothing).
    #[instrument(skip_all)]
    pub async fn forget(&self, user: &UserId) -> ServiceResult<(u32, u32)> {
        let consents = self.deps.consents.clone();
        let who = user.clone();
        let erase = async move { Ok(consents.forget(&who).await?) };
        let audit = (Action::UserForgotten, None);
        let (events, purged) = self.purge_after(user, &Feature::ALL, erase, audit).await?;
        self.deps.limits.forget(user).await?;
        Ok((purged, events))
    }
}
