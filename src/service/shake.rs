//! Shake operations (contract §3 Shake).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::task::TaskTracker;
use tracing::instrument;

use super::{ServiceResult, Vicinity, audit, limits::Places};
use crate::{
    domain::{
        Feature, Location, Timestamp, UserId,
        limits::Policy,
        shake::{PendingShake, ShakeMatch, ShakePair},
    },
    places::Placement,
    storage::{LimitKey, NewShake, ShakeOutcome, ShakeStore},
    telemetry::metrics,
};

/// Time kept back from the call's deadline to answer after the window ends.
const ANSWER_MARGIN: Duration = Duration::from_millis(100);
/// How much longer than the window a shake's places are held: room for the consent check and
/// the pairing call before the window starts (a slower start shortens the window instead).
const SETUP_ALLOWANCE: Duration = Duration::from_millis(500);

/// Withdraws a pending shake if its call is dropped (the client cancelled) before it ends,
/// then gives back its places, in that order and in one task: given back first, the user's
/// pending place would admit a second shake while the first still waits. While it lives, the
/// shake counts in `vicinity_shakes_waiting`.
struct WithdrawOnDrop {
    store: Arc<dyn ShakeStore>,
    /// Where the withdrawal runs ([`super::Deps::tasks`]).
    tasks: TaskTracker,
    pending: Option<PendingShake>,
    places: Option<Places>,
}

impl WithdrawOnDrop {
    fn new(
        store: Arc<dyn ShakeStore>,
        tasks: TaskTracker,
        pending: PendingShake,
        places: Places,
    ) -> Self {
        metrics::get().shakes_waiting.inc();
        Self {
            store,
            tasks,
            pending: Some(pending),
            places: Some(places),
        }
    }
}

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        metrics::get().shakes_waiting.dec();
        if let Some(pending) = self.pending.take() {
            let store = self.store.clone();
            let places = self.places.take();
            self.tasks.spawn(async move {
                if let Err(error) = store.withdraw(&pending).await {
                    tracing::warn!(%error, "could not withdraw an abandoned shake");
                }
                if let Some(mut places) = places {
                    places.release().await;
                }
            });
        }
    }
}

impl Vicinity {
    /// Shakes: paired at once with the nearest pending shaker, or waits for one up to the
    /// shake window and never past `budget` (the call's deadline). `None`: no partner.
    ///
    /// Limits first (contract §4.3): the user's shake rate, one pending shake per user, and at
    /// most `key_pending_shakes` pending for all users of the `caller`'s API key (against
    /// squatting: one key holding shakes in many cells to catch every real shaker). The
    /// places are held for the shake's window and given back when the call ends.
    #[instrument(skip_all)]
    pub async fn shake(
        &self,
        caller: &str,
        user: &UserId,
        location: Location,
        budget: Duration,
    ) -> ServiceResult<Option<ShakeMatch>> {
        self.require_safe_location_store()?;
        let policy = &self.deps.policy;
        let id = crate::random::u64().map_err(crate::storage::StoreError::from)?;
        let window = self
            .deps
            .shake_window
            .min(budget.saturating_sub(ANSWER_MARGIN));
        let rate = (LimitKey::Shakes(user.clone()), policy.shakes);
        let places = vec![
            (
                LimitKey::PendingShakes(user.clone()),
                Policy::PENDING_SHAKES_PER_USER,
            ),
            (
                LimitKey::KeyPendingShakes(caller.to_owned()),
                policy.key_pending_shakes,
            ),
        ];
        let hold = window + ANSWER_MARGIN + SETUP_ALLOWANCE;
        let held_from = Instant::now();
        let mut places = self.admit_holding(rate, places, id, hold).await?;
        let held_until = held_from + hold - ANSWER_MARGIN;
        let shaken = self
            .shake_held(id, user, location, window, held_until, &mut places)
            .await;
        places.release().await;
        shaken
    }

    /// [`Vicinity::shake`] once its `places` are held (until `held_until`, less the answer
    /// margin). While a shake is pending they are in the care of its withdrawal guard.
    async fn shake_held(
        &self,
        id: u64,
        user: &UserId,
        location: Location,
        window: Duration,
        held_until: Instant,
        places: &mut Places,
    ) -> ServiceResult<Option<ShakeMatch>> {
        // The clear mark is read before consent: a withdrawal that lands after the consent
        // check clears Shake after this read, so the pairing step, which compares the mark,
        // refuses the shake instead of pairing a user whose withdrawal answered OK.
        let mark = self.deps.shakes.clear_mark(user).await?;
        self.require_consent(user, Feature::Shake).await?;
        // The pending shake must end before its places do (else a second shake of the user
        // would be admitted while it waits): its window is cut to what the hold has left.
        let window = window.min(held_until.saturating_duration_since(Instant::now()));
        let placement = self.place(self.deps.grid.snap(location.coords));
        self.count_placed(placement);
        let cell = match placement {
            // In a coarsened parent, inside a place or not, a shake is placed at the parent's
            // representative cell as an update is: it may match anyone shaking in the parent,
            // so its outcome does not tell the place from the rest of the parent.
            Placement::Exact(cell) | Placement::Coarse { cell, .. } => cell,
            // Inside a place of a hidden category: never matched (contract §4.8). The answer is
            // the one of a shake nobody answered, at the time it would come.
            Placement::Hidden(_) => {
                tokio::time::sleep(window).await;
                return Ok(None);
            }
        };
        let shake = NewShake {
            id,
            user,
            cell,
            window,
            mark,
        };
        let pair = match self.deps.shakes.shake(&shake).await? {
            ShakeOutcome::Cleared => None,
            ShakeOutcome::Paired(pair) => Some(pair),
            ShakeOutcome::Pending(pending) => {
                let mut guard = WithdrawOnDrop::new(
                    self.deps.shakes.clone(),
                    self.deps.tasks.clone(),
                    pending.clone(),
                    places.take(),
                );
                // On an error the guard withdraws, then gives the places back.
                let pair = self.deps.shakes.await_partner(&pending, window).await?;
                guard.pending = None;
                if let Some(held) = guard.places.take() {
                    *places = held;
                }
                pair
            }
        };
        match pair {
            Some(pair) => Ok(Some(self.keep_match(user, cell, &pair).await?)),
            None => Ok(None),
        }
    }

    async fn keep_match(
        &self,
        user: &UserId,
        cell: h3o::CellIndex,
        pair: &ShakePair,
    ) -> ServiceResult<ShakeMatch> {
        let matched = pair.seen_from(&self.deps.grid, cell);
        self.deps
            .shakes
            .record_match(user, &matched, self.deps.retention)
            .await?;
        Ok(matched)
    }

    /// The user's matches (partner and band, never a position).
    #[instrument(skip_all)]
    pub async fn shake_history(&self, user: &UserId) -> ServiceResult<Vec<ShakeMatch>> {
        Ok(self.deps.shakes.history(user).await?)
    }

    /// Leaves Shake: pending shakes are withdrawn, history stays until it is purged (returned).
    #[instrument(skip_all)]
    pub async fn leave_shake(&self, user: &UserId) -> ServiceResult<Option<Timestamp>> {
        let purge_at = self.deps.shakes.leave_shake(user).await?;
        audit::record(audit::Action::LeftShake, user, Some(Feature::Shake), 0);
        Ok(purge_at)
    }
}
