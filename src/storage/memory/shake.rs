//! Shake in the embedded store: pending shakes, delivered pairings and match history, under
//! the store's one lock, so pairing and clearing are atomic. Same semantics as the Redis
//! store's scripts: every pending shake and uncollected pairing of a user is found by a
//! Clear, a Clear removes the entries naming the user from others' histories, and a
//! tombstone keeps a match recorded late (by a call still finishing) from coming back.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use tokio::sync::Notify;
use tonic::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        Retention, Timestamp, UserId,
        shake::{self, PendingShake, ShakeMatch, ShakePair},
    },
    storage::{
        NewShake, SHAKE_HISTORY_CAP, SHAKE_TOMBSTONE, SHAKE_UNCOLLECTED, ShakeOutcome, ShakeStore,
        StoreResult,
    },
};

/// A pairing waiting to be collected by the pending side.
#[derive(Debug)]
struct Delivered {
    /// Whose pending shake it was.
    owner: UserId,
    pair: ShakePair,
    until: Timestamp,
}

/// Shake's part of the store state.
#[derive(Debug, Default)]
pub(super) struct ShakeState {
    pending: HashMap<u64, (PendingShake, Arc<Notify>)>,
    delivered: HashMap<u64, Delivered>,
    history: HashMap<UserId, VecDeque<(Timestamp, ShakeMatch)>>,
    /// For each user, who has a history entry naming them, until when.
    named_by: HashMap<UserId, HashMap<UserId, Timestamp>>,
    /// When each user (by `UserId::pseudonym`) last cleared Shake, kept for [`SHAKE_TOMBSTONE`].
    cleared: HashMap<u64, Timestamp>,
}

impl ShakeState {
    /// Removes whatever is past its deadline at `now`; returns how many entries.
    pub(super) fn purge_due(&mut self, now: Timestamp) -> u32 {
        let before = self.len();
        self.pending.retain(|_, (p, _)| p.expires > now);
        self.delivered.retain(|_, d| d.until > now);
        for entries in self.history.values_mut() {
            while entries
                .front()
                .is_some_and(|(deadline, _)| *deadline <= now)
            {
                entries.pop_front();
            }
        }
        self.history.retain(|_, entries| !entries.is_empty());
        for naming in self.named_by.values_mut() {
            naming.retain(|_, until| *until > now);
        }
        self.named_by.retain(|_, naming| !naming.is_empty());
        self.cleared.retain(|_, at| at.plus(SHAKE_TOMBSTONE) > now);
        (before - self.len()) as u32
    }

    /// The earliest deadline of any entry held (`None`: none), tombstones aside. A scan of
    /// the whole state: the gauge that asks reads it at most about once a second.
    pub(super) fn earliest(&self) -> Option<Timestamp> {
        let pending = self.pending.values().map(|(p, _)| p.expires);
        let delivered = self.delivered.values().map(|d| d.until);
        let history = self
            .history
            .values()
            .filter_map(|e| e.front().map(|(d, _)| *d));
        let named = self.named_by.values().flat_map(|n| n.values().copied());
        pending.chain(delivered).chain(history).chain(named).min()
    }

    /// Every entry physically held (tombstones hold no match and are not counted).
    pub(super) fn len(&self) -> usize {
        self.pending.len()
            + self.delivered.len()
            + self.history.values().map(VecDeque::len).sum::<usize>()
            + self.named_by.values().map(HashMap::len).sum::<usize>()
    }

    fn take_delivered(&mut self, id: u64) -> Option<ShakePair> {
        self.delivered.remove(&id).map(|d| d.pair)
    }

    /// The user's clear mark: when they last cleared Shake (ms), 0 if no tombstone is kept.
    fn mark(&self, user: &UserId) -> i64 {
        self.cleared
            .get(&user.pseudonym())
            .map_or(0, |at| at.as_millis())
    }

    /// Leaves the tombstone of a Clear at `now`: later than the last one even within one
    /// millisecond, so every Clear changes the mark.
    fn tombstone(&mut self, user: &UserId, now: Timestamp) {
        let last = self.mark(user);
        let at = now.as_millis().max(last + 1);
        self.cleared
            .insert(user.pseudonym(), Timestamp::from_millis(at));
    }

    fn cleared_since(&self, user: &UserId, at: Timestamp) -> bool {
        self.cleared
            .get(&user.pseudonym())
            .is_some_and(|cleared| *cleared >= at)
    }
}

#[async_trait]
impl ShakeStore for MemoryStore {
    async fn shake(&self, new: &NewShake<'_>) -> StoreResult<ShakeOutcome> {
        let (id, user, cell) = (new.id, new.user, new.cell);
        let now = self.now();
        let mut state = self.shared.lock();
        if state.shake.mark(user) != new.mark {
            return Ok(ShakeOutcome::Cleared);
        }
        let shake = PendingShake {
            id,
            user: user.clone(),
            cell,
            arrived: now,
            expires: now.plus(new.window),
        };
        let shakes = &mut state.shake;
        let partner =
            shake::choose(&shake, now, shakes.pending.values().map(|(p, _)| p)).map(|p| p.id);
        let Some((partner, wake)) = partner.and_then(|id| shakes.pending.remove(&id)) else {
            shakes
                .pending
                .insert(id, (shake.clone(), Arc::new(Notify::new())));
            return Ok(ShakeOutcome::Pending(shake));
        };
        let theirs = Delivered {
            owner: partner.user.clone(),
            pair: ShakePair {
                partner: user.clone(),
                partner_cell: cell,
                matched_at: now,
            },
            until: partner.expires.plus(SHAKE_UNCOLLECTED),
        };
        shakes.delivered.insert(partner.id, theirs);
        wake.notify_one();
        Ok(ShakeOutcome::Paired(ShakePair {
            partner: partner.user,
            partner_cell: partner.cell,
            matched_at: now,
        }))
    }

    async fn clear_mark(&self, user: &UserId) -> StoreResult<i64> {
        Ok(self.shared.lock().shake.mark(user))
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
        let shakes = &mut state.shake;
        if shakes.cleared_since(user, matched.matched_at)
            || shakes.cleared_since(&matched.partner, matched.matched_at)
        {
            return Ok(());
        }
        let entries = shakes.history.entry(user.clone()).or_default();
        let at = entries.partition_point(|(d, _)| *d <= deadline);
        entries.insert(at, (deadline, matched.clone()));
        while entries.len() > SHAKE_HISTORY_CAP {
            entries.pop_front();
        }
        let until = shakes
            .named_by
            .entry(matched.partner.clone())
            .or_default()
            .entry(user.clone())
            .or_insert(deadline);
        *until = (*until).max(deadline);
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
        let now = self.now();
        let mut state = self.shared.lock();
        let shakes = &mut state.shake;
        let waiting = shakes.pending.len() + shakes.delivered.len();
        shakes.pending.retain(|_, (p, _)| p.user != *user);
        shakes
            .delivered
            .retain(|_, d| d.owner != *user && d.pair.partner != *user);
        // What the user held (shakes, pairings, their own history) is counted, as on Redis;
        // the entries naming them in others' histories go too.
        let mut removed = waiting - shakes.pending.len() - shakes.delivered.len();
        for (_, mine) in shakes.history.remove(user).into_iter().flatten() {
            removed += 1;
            if let Some(naming) = shakes.named_by.get_mut(&mine.partner) {
                naming.remove(user);
            }
        }
        for (other, _) in shakes.named_by.remove(user).into_iter().flatten() {
            if let Some(entries) = shakes.history.get_mut(&other) {
                entries.retain(|(_, m)| m.partner != *user);
            }
        }
        shakes.named_by.retain(|_, naming| !naming.is_empty());
        shakes.history.retain(|_, entries| !entries.is_empty());
        shakes.tombstone(user, now);
        Ok(removed as u32)
    }
}
