//! The embedded store's limit state: the same semantics as the Redis scripts
//! (`limit_admit.lua`, `hold_take.lua`), on the store's clock, void state removed by the
//! store's sweep.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use tonic::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        Feature, Timestamp, UserId,
        limits::{Rate, Verdict},
    },
    storage::{Admission, Holding, Judged, LimitKey, LimitStore, LocationEntry, StoreResult},
};

/// Limit state void by a given time: what the sweep removes.
#[derive(Debug, Default)]
pub(super) struct Limits {
    /// Theoretical arrival times of rates (µs since the epoch).
    rates: HashMap<LimitKey, i64>,
    /// Places held: token and end.
    holds: HashMap<LimitKey, Vec<(u64, Timestamp)>>,
    /// Every key by when its state is void (the latest end of its places).
    void_at: BTreeSet<(Timestamp, LimitKey)>,
}

/// When a rate's state (its theoretical arrival time, µs) is void: that time, in ms rounded up.
fn void_at(tat_us: i64) -> Timestamp {
    Timestamp::from_millis((tat_us + 999).div_euclid(1_000))
}

/// Void limit keys removed per sweep batch (bounded work under the store's lock).
const VOID_BATCH: usize = 4_096;

impl Limits {
    /// What `rate` says of one more call under `key` at `now`, without keeping anything.
    fn judge(&self, key: &LimitKey, rate: Rate, now: Timestamp) -> Verdict {
        rate.judge(self.rates.get(key).copied(), now.as_millis() * 1_000)
    }

    /// How long until a place under `key` is free, when all `cap` are held at `now`.
    fn full_for(&self, key: &LimitKey, cap: u32, now: Timestamp) -> Option<Duration> {
        let ends = self
            .holds
            .get(key)?
            .iter()
            .map(|p| p.1)
            .filter(|&end| end > now);
        let (held, first) = ends.fold((0, None::<Timestamp>), |(n, first), end| {
            (n + 1, Some(first.map_or(end, |f| f.min(end))))
        });
        (held >= cap as usize).then(|| first.unwrap_or(now).since(now))
    }

    pub(super) fn admit(&mut self, key: &LimitKey, rate: Rate, now: Timestamp) -> Admission {
        match self.judge(key, rate, now) {
            Verdict::Refuse(wait) => Admission::Refused(wait),
            Verdict::Admit(next) => {
                if let Some(old) = self.rates.insert(key.clone(), next) {
                    self.void_at.remove(&(void_at(old), key.clone()));
                }
                self.void_at.insert((void_at(next), key.clone()));
                Admission::Admitted(now)
            }
        }
    }

    /// [`crate::storage::LimitStore::admit_holding`]: judged in full before anything is kept.
    pub(super) fn admit_holding(&mut self, holding: &Holding<'_>, now: Timestamp) -> Judged {
        let (key, rate, places) = (holding.key, holding.rate, holding.places);
        if let Verdict::Refuse(wait) = self.judge(key, rate, now) {
            return Err((key.limit(), wait));
        }
        for (place, cap) in places {
            if let Some(wait) = self.full_for(place, *cap, now) {
                return Err((place.limit(), wait));
            }
        }
        self.admit(key, rate, now);
        for (place, cap) in places {
            self.hold(place, holding.token, *cap, holding.hold, now);
        }
        Ok(now)
    }

    pub(super) fn hold(
        &mut self,
        key: &LimitKey,
        token: u64,
        cap: u32,
        hold: Duration,
        now: Timestamp,
    ) -> Admission {
        if let Some(wait) = self.full_for(key, cap, now) {
            return Admission::Refused(wait);
        }
        let places = self.holds.entry(key.clone()).or_default();
        let before = places.iter().map(|p| p.1).max();
        places.retain(|&(_, end)| end > now);
        places.push((token, now.plus(hold)));
        let after = places.iter().map(|p| p.1).max();
        self.revoid(key, before, after);
        Admission::Admitted(now)
    }

    pub(super) fn release(&mut self, key: &LimitKey, token: u64) {
        let Some(places) = self.holds.get_mut(key) else {
            return;
        };
        let before = places.iter().map(|p| p.1).max();
        places.retain(|&(t, _)| t != token);
        let after = places.iter().map(|p| p.1).max();
        if places.is_empty() {
            self.holds.remove(key);
        }
        self.revoid(key, before, after);
    }

    fn revoid(&mut self, key: &LimitKey, before: Option<Timestamp>, after: Option<Timestamp>) {
        if let Some(before) = before {
            self.void_at.remove(&(before, key.clone()));
        }
        if let Some(after) = after {
            self.void_at.insert((after, key.clone()));
        }
    }

    /// Deletes the state of `key`.
    pub(super) fn forget(&mut self, key: &LimitKey) {
        if let Some(tat) = self.rates.remove(key) {
            self.void_at.remove(&(void_at(tat), key.clone()));
        }
        if let Some(places) = self.holds.remove(key) {
            let end = places.iter().map(|p| p.1).max();
            self.revoid(key, end, None);
        }
    }

    /// Removes at most [`VOID_BATCH`] keys void at `now`; whether some remain.
    pub(super) fn purge_void(&mut self, now: Timestamp) -> bool {
        for _ in 0..VOID_BATCH {
            let Some((at, key)) = self.void_at.first().cloned() else {
                return false;
            };
            if at > now {
                return false;
            }
            self.void_at.pop_first();
            self.rates.remove(&key);
            self.holds.remove(&key);
        }
        true
    }

    /// Keys with state (for tests of the sweep).
    pub(super) fn len(&self) -> usize {
        self.rates.len() + self.holds.len()
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn admit(&self, key: &LimitKey, rate: Rate) -> StoreResult<Admission> {
        let now = self.now();
        Ok(self.shared.lock().limits.admit(key, rate, now))
    }

    async fn hold(
        &self,
        key: &LimitKey,
        token: u64,
        cap: u32,
        hold: Duration,
    ) -> StoreResult<Admission> {
        let now = self.now();
        Ok(self.shared.lock().limits.hold(key, token, cap, hold, now))
    }

    async fn release(&self, key: &LimitKey, token: u64) -> StoreResult<()> {
        self.shared.lock().limits.release(key, token);
        Ok(())
    }

    async fn admit_holding(&self, holding: &Holding<'_>) -> StoreResult<Judged> {
        let now = self.now();
        Ok(self.shared.lock().limits.admit_holding(holding, now))
    }

    async fn forget(&self, user: &UserId) -> StoreResult<()> {
        let mut state = self.shared.lock();
        for key in LimitKey::all_of(user) {
            state.limits.forget(&key);
        }
        Ok(())
    }

    async fn admit_reading(
        &self,
        key: &LimitKey,
        rate: Rate,
        feature: Feature,
        user: &UserId,
    ) -> StoreResult<(Admission, Option<LocationEntry>)> {
        let now = self.now();
        let mut state = self.shared.lock();
        let admission = state.limits.admit(key, rate, now);
        let entry = match admission {
            Admission::Admitted(_) => state.live(&(feature, user.clone()), now).cloned(),
            Admission::Refused(_) => None,
        };
        Ok((admission, entry))
    }
}
