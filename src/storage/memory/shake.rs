//! Shake in the embedded store: pending shakes, delivered pairings and match history, under
//! the store's one lock, so pairing is atomic.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use h3o::CellIndex;
use tokio::sync::Notify;
use tonic::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        Retention, Timestamp, UserId,
        shake::{self, PendingShake, ShakeMatch, ShakePair},
    },
    storage::{ShakeOutcome, ShakeStore, StoreResult},
};

/// How long a pairing waits for its pending side to collect it.
const UNCOLLECTED: Duration = Duration::from_secs(10);

/// Shake's part of the store state.
#[derive(Debug, Default)]
pub(super) struct ShakeState {
    pending: HashMap<u64, (PendingShake, Arc<Notify>)>,
    delivered: HashMap<u64, (ShakePair, Timestamp)>,
    history: HashMap<UserId, VecDeque<(Timestamp, ShakeMatch)>>,
}

impl ShakeState {
    /// Removes whatever is past its deadline at `now`; returns how many entries.
    pub(super) fn purge_due(&mut self, now: Timestamp) -> u32 {
        let before = self.len();
        self.pending.retain(|_, (p, _)| p.expires > now);
        self.delivered.retain(|_, (_, until)| *until > now);
        for entries in self.history.values_mut() {
            while entries
                .front()
                .is_some_and(|(deadline, _)| *deadline <= now)
            {
                entries.pop_front();
            }
        }
        self.history.retain(|_, entries| !entries.is_empty());
        (before - self.len()) as u32
    }

    /// Every entry physically held.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
            + self.delivered.len()
            + self.history.values().map(VecDeque::len).sum::<usize>()
    }

    fn take_delivered(&mut self, id: u64) -> Option<ShakePair> {
        self.delivered.remove(&id).map(|(pair, _)| pair)
    }
}

#[async_trait]
impl ShakeStore for MemoryStore {
    async fn shake(
        &self,
        id: u64,
        user: &UserId,
        cell: CellIndex,
        window: Duration,
    ) -> StoreResult<ShakeOutcome> {
        let now = self.now();
        let grid = self.shared.grid;
        let mut state = self.shared.lock();
        let shake = PendingShake {
            id,
            user: user.clone(),
            cell,
            arrived: now,
            expires: now.plus(window),
        };
        let shakes = &mut state.shake;
        let partner = shake::nearest(&grid, &shake, now, shakes.pending.values().map(|(p, _)| p))
            .map(|p| p.id);
        let Some((partner, wake)) = partner.and_then(|id| shakes.pending.remove(&id)) else {
            shakes
                .pending
                .insert(id, (shake.clone(), Arc::new(Notify::new())));
            return Ok(ShakeOutcome::Pending(shake));
        };
        let theirs = ShakePair {
            partner: user.clone(),
            partner_cell: cell,
            matched_at: now,
        };
        shakes
            .delivered
            .insert(partner.id, (theirs, partner.expires.plus(UNCOLLECTED)));
        wake.notify_one();
        Ok(ShakeOutcome::Paired(ShakePair {
            partner: partner.user,
            partner_cell: partner.cell,
            matched_at: now,
        }))
    }

    async fn await_partner(
        &self,
        pending: &PendingShake,
        wait: Duration,
    ) -> StoreResult<Option<ShakePair>> {
        let wake = {
            let mut state = self.shared.lock();
            if let Some(pair) = state.shake.take_delivered(pending.id) {
                return Ok(Some(pair));
            }
            state
                .shake
                .pending
                .get(&pending.id)
                .map(|(_, wake)| wake.clone())
        };
        if let Some(wake) = wake {
            // A pairing made before this wait stored a permit: notified() returns at once.
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        }
        self.withdraw(pending).await
    }

    async fn withdraw(&self, pending: &PendingShake) -> StoreResult<Option<ShakePair>> {
        let mut state = self.shared.lock();
        state.shake.pending.remove(&pending.id);
        Ok(state.shake.take_delivered(pending.id))
    }

    async fn record_match(
        &self,
        user: &UserId,
        matched: &ShakeMatch,
        retention: Retention,
    ) -> StoreResult<()> {
        let deadline = matched.matched_at.plus(retention.window());
        let mut state = self.shared.lock();
        let entries = state.shake.history.entry(user.clone()).or_default();
        let at = entries.partition_point(|(d, _)| *d <= deadline);
        entries.insert(at, (deadline, matched.clone()));
        Ok(())
    }

    async fn history(&self, user: &UserId) -> StoreResult<Vec<ShakeMatch>> {
        let now = self.now();
        let state = self.shared.lock();
        let entries = state.shake.history.get(user).into_iter().flatten();
        Ok(entries
            .filter(|(d, _)| *d > now)
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn leave_shake(&self, user: &UserId) -> StoreResult<Option<Timestamp>> {
        let mut state = self.shared.lock();
        state.shake.pending.retain(|_, (p, _)| p.user != *user);
        let last = state
            .shake
            .history
            .get(user)
            .and_then(|e| e.back().map(|(d, _)| *d));
        Ok(last)
    }

    async fn clear_shake(&self, user: &UserId) -> StoreResult<u32> {
        let mut state = self.shared.lock();
        let shakes = &mut state.shake;
        let before = shakes.len();
        shakes.pending.retain(|_, (p, _)| p.user != *user);
        shakes
            .delivered
            .retain(|_, (pair, _)| pair.partner != *user);
        shakes.history.remove(user);
        Ok((before - shakes.len()) as u32)
    }
}
