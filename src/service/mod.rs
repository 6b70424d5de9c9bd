//! The service: orchestrates the domain rules and the stores for each operation. Owns the
//! tracing spans (with an allow-list of fields: never a location) and the audit trail.

mod audit;
mod consent;
mod error;
mod nearby;
mod privacy;
mod shake;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use error::ServiceError;
pub use nearby::{ListNearby, NearbyPage};
pub use privacy::Export;

use crate::{
    domain::{Clock, Feature, Retention, SnapGrid, UserId, nearby::Secret},
    storage::{ConsentStore, LocationStore, ShakeStore},
};

/// A service result.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// What the service is built from.
#[derive(Clone)]
pub struct Deps {
    /// Where locations live.
    pub locations: Arc<dyn LocationStore>,
    /// Where consent records live.
    pub consents: Arc<dyn ConsentStore>,
    /// Where pending shakes and match history live.
    pub shakes: Arc<dyn ShakeStore>,
    /// How long a shake waits for a partner at most.
    pub shake_window: std::time::Duration,
    /// The clock for consent timestamps and id generation (deadlines use the store's clock).
    pub clock: Arc<dyn Clock>,
    /// The snapping grid.
    pub grid: SnapGrid,
    /// The retention window.
    pub retention: Retention,
    /// The server secret for in-band order and page tokens.
    pub secret: Arc<Secret>,
}

/// The vicinity service: every operation of the API, on domain types.
#[derive(Clone)]
pub struct Vicinity {
    deps: Deps,
}

impl Vicinity {
    /// A service over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// Fails closed unless the user's current consent for `feature` is GRANTED (SPEC §4.1).
    async fn require_consent(&self, user: &UserId, feature: Feature) -> ServiceResult<()> {
        let granted = self
            .deps
            .consents
            .granted_among(feature, std::slice::from_ref(user))
            .await?;
        if granted.first().copied().unwrap_or(false) {
            Ok(())
        } else {
            Err(ServiceError::ConsentRequired(feature))
        }
    }

    /// Deletes the user's data in `features`: location entries and, for Shake, pending shakes
    /// and history. Returns how many entries existed.
    async fn purge(&self, user: &UserId, features: &[Feature]) -> ServiceResult<u32> {
        let mut purged = self.deps.locations.clear(user, features).await?;
        if features.contains(&Feature::Shake) {
            purged += self.deps.shakes.clear_shake(user).await?;
        }
        Ok(purged)
    }

    /// Whether both stores answer (for health checks).
    pub async fn ready(&self) -> ServiceResult<()> {
        self.deps.consents.ping().await?;
        self.deps.locations.now().await?;
        Ok(())
    }
}

/// A fresh random 64-bit id (for shakes).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // As for random_id: a broken OS randomness source falls back to the time.
    if getrandom::fill(&mut bytes).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

/// A fresh random id (128 bits, hex) for consent events.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // getrandom fails only on a broken OS; a time-based fallback keeps ids unique enough.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
