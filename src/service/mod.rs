//! The service: orchestrates the domain rules and the stores for each operation. Owns the
//! tracing spans (with an allow-list of fields: never a location) and the audit trail.

mod audit;
mod consent;
mod error;
mod limits;
mod nearby;
mod places;
mod privacy;
mod shake;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio_util::task::TaskTracker;

use audit::Action;

pub use error::ServiceError;
pub use nearby::{ListNearby, NearbyPage};
pub use privacy::Export;

use crate::{
    domain::{
        Clock, Feature, Retention, SnapGrid, UserId,
        limits::{Policy, SurelyAllowed},
        nearby::{OrderContext, Secret},
    },
    storage::{ConsentStore, LimitStore, LocationStore, ShakeStore, StoreError},
};

/// How long a purge owed is left to the call that owes it before a sweep finishes it.
const OWED_GRACE: Duration = Duration::from_secs(5);
/// Purges owed that one sweep finishes at most.
const OWED_PER_SWEEP: usize = 100;
/// A purge owed this long has outlived several sweeps that should have finished it.
pub const OWED_STUCK_AFTER: Duration = Duration::from_secs(30);
/// The most stuck purges one reading counts (the gauge then reads this).
const OWED_STUCK_READ: usize = 1_000;

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
    /// Where limits count (the location store, so they hold across nodes).
    pub limits: Arc<dyn LimitStore>,
    /// The abuse limits.
    pub policy: Policy,
    /// Signs a receipt for every consent change (contract §4.8); `None`: no receipts.
    pub receipts: Option<Arc<crate::receipts::Receipts>>,
    /// The sensitive-place policy every entering position goes through (contract §4.8).
    pub places: Arc<crate::places::Places>,
    /// Detached work (a write or a purge its caller may stop waiting for, the withdrawal of
    /// an abandoned shake, places given back): spawned here, so the server's drain and the
    /// tests wait for it instead of guessing how long it takes.
    pub tasks: TaskTracker,
}

/// The vicinity service: every operation of the API, on domain types.
#[derive(Clone)]
pub struct Vicinity {
    deps: Deps,
    /// The jump cap's surely allowed parents of the cells updates go to, per order epoch.
    surely_allowed: Arc<SurelyAllowed>,
    /// Set while a node of the location store persists to disk or may evict keys, as the
    /// server's settings check last read them ([`Vicinity::set_location_store_unsafe`]).
    location_store_unsafe: Arc<AtomicBool>,
}

impl Vicinity {
    /// A service over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self {
            deps,
            surely_allowed: Arc::default(),
            location_store_unsafe: Arc::default(),
        }
    }

    /// Whether a node of the location store now writes to disk (without
    /// `--allow-persistent-location-store`) or may evict keys: the server's settings check
    /// sets it each time it reads them. While it is set, the calls that bring a position into
    /// the store (UpdateLocation, Shake) are refused and write nothing: on disk a location
    /// outlives its purge, and an evicted clear mark or Shake tombstone reopens the race with a
    /// withdrawal. Lists, Leave, Clear, withdrawals and erasures go on, so a user can still
    /// remove what is stored (docs/decisions.md, "Location writes stop while the location
    /// store is unsafe"). Returns what it was before.
    pub fn set_location_store_unsafe(&self, unsafe_now: bool) -> bool {
        self.location_store_unsafe
            .swap(unsafe_now, Ordering::SeqCst)
    }

    /// Refuses a call that would bring a position into the store while the location store's
    /// settings are unsafe ([`Vicinity::set_location_store_unsafe`]).
    fn require_safe_location_store(&self) -> ServiceResult<()> {
        if self.location_store_unsafe.load(Ordering::SeqCst) {
            return Err(ServiceError::LocationStoreUnsafe);
        }
        Ok(())
    }

    /// Fails closed unless the user's current consent for `feature` is GRANTED (contract §4.1).
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

    /// [`Vicinity::require_consent`] for the check that admits a location write under a fence
    /// this node had at `fenced` ([`crate::storage::Fence::seen`]).
    async fn require_consent_to_write(
        &self,
        user: &UserId,
        feature: Feature,
        fenced: std::time::Instant,
    ) -> ServiceResult<()> {
        let consents = &self.deps.consents;
        if consents.granted_to_write(feature, user, fenced).await? {
            Ok(())
        } else {
            Err(ServiceError::ConsentRequired(feature))
        }
    }

    /// Deletes the user's data in `features` now: location entries and, for Shake, pending
    /// shakes and history. Returns how many entries existed. Callers go through
    /// [`Vicinity::purge_after`], which makes the purge finish.
    async fn purge_now(&self, user: &UserId, features: &[Feature]) -> ServiceResult<u32> {
        let mut purged = self.deps.locations.clear(user, features).await?;
        if features.contains(&Feature::Shake) {
            purged += self.deps.shakes.clear_shake(user).await?;
        }
        Ok(purged)
    }

    /// Runs `first` (the consent write of a withdrawal or an erasure, if any), then purges the
    /// user's data in `features`, as a purge that finishes (contract §4.5): it is recorded as
    /// owed in the consent store before anything changes, then runs in a task of its own, so
    /// a caller that goes away (a deadline, a cancel) does not stop it half-way; it is settled
    /// once done, and one that did not finish (a store down, a node killed) is finished by a
    /// later sweep ([`Vicinity::sweep`]). The audit event is written when the purge is done,
    /// or, for a consent change (a withdrawal, an erasure), as soon as `first` wrote it,
    /// whatever the purge does (every read sees the change from then on; a
    /// purge left owed is audited again when a sweep finishes it).
    async fn purge_after<T: Send + 'static>(
        &self,
        user: &UserId,
        features: &[Feature],
        first: impl Future<Output = ServiceResult<T>> + Send + 'static,
        audit: (Action, Option<Feature>),
    ) -> ServiceResult<(T, u32)> {
        let mut owed = Vec::with_capacity(features.len());
        for feature in features {
            owed.push(self.deps.consents.owe_purge(user, *feature).await?);
        }
        let this = self.clone();
        let (user, features) = (user.clone(), features.to_vec());
        let task = self.deps.tasks.spawn(async move {
            let before = first.await?;
            let purged = this.purge_now(&user, &features).await;
            match &purged {
                Ok(n) => audit::record(audit.0, &user, audit.1, *n),
                Err(_) if audit.0.changes_consent() => audit::record(audit.0, &user, audit.1, 0),
                Err(_) => {}
            }
            let purged = purged?;
            for owed in &owed {
                this.deps.consents.settle_purge(owed).await?;
            }
            Ok((before, purged))
        });
        task.await
            .map_err(|e| StoreError::unfinished(&e, "purging"))?
    }

    /// One sweep: removes what is past its deadline, then finishes purges owed for longer
    /// than [`OWED_GRACE`] (at most [`OWED_PER_SWEEP`]); one that fails stays owed and the
    /// others go on. Safe on every node at once. The first error is returned, after the rest.
    pub async fn sweep(&self) -> ServiceResult<u32> {
        let epoch = OrderContext::epoch_at(self.deps.clock.now());
        self.surely_allowed.expire(epoch);
        let expired = self.deps.locations.purge_expired().await;
        if let Ok(expired) = &expired {
            audit::expired(expired);
        }
        let owed = self
            .deps
            .consents
            .owed_purges(OWED_GRACE, OWED_PER_SWEEP)
            .await?;
        let mut purged = 0;
        let mut failed = None;
        for owed in owed {
            let finished = async {
                let n = self.purge_now(&owed.user, &[owed.feature]).await?;
                self.deps.consents.settle_purge(&owed).await?;
                audit::record(Action::OwedPurgeFinished, &owed.user, Some(owed.feature), n);
                Ok::<_, ServiceError>(n)
            };
            match finished.await {
                Ok(n) => purged += n,
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        let purged = purged + expired?.entries;
        failed.map_or(Ok(purged), Err)
    }

    /// How long the oldest entry past its deadline has been overdue, by the store's clock
    /// (zero: nothing overdue).
    pub async fn oldest_overdue(&self) -> ServiceResult<Duration> {
        let Some(earliest) = self.deps.locations.earliest_deadline().await? else {
            return Ok(Duration::ZERO);
        };
        Ok(self.deps.locations.now().await?.since(earliest))
    }

    /// How many purges have been owed for longer than [`OWED_STUCK_AFTER`] (counted up to
    /// [`OWED_STUCK_READ`]): each is a clear, withdrawal or erasure whose data several sweeps
    /// could not finish deleting.
    pub async fn owed_purges_stuck(&self) -> ServiceResult<usize> {
        let stuck = self
            .deps
            .consents
            .owed_purges(OWED_STUCK_AFTER, OWED_STUCK_READ)
            .await?;
        Ok(stuck.len())
    }

    /// Whether both stores answer (for health checks).
    pub async fn ready(&self) -> ServiceResult<()> {
        self.deps.consents.ping().await?;
        self.deps.locations.now().await?;
        Ok(())
    }
}

/// A fresh random id (128 bits, hex) for consent events.
fn random_id() -> ServiceResult<String> {
    let bytes = crate::random::bytes::<16>().map_err(crate::storage::StoreError::from)?;
    Ok(hex::encode(bytes))
}
