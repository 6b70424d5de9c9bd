//! The embedded store's consent records and purges owed.

use std::time::Duration;

use tonic::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        ConsentEvent, ConsentRecord, Feature, Timestamp, UserId, consent::HISTORY_PER_FEATURE,
    },
    storage::{ConsentStore, OwedPurge, StoreResult},
};

#[async_trait]
impl ConsentStore for MemoryStore {
    async fn current(&self, user: &UserId, feature: Feature) -> StoreResult<ConsentRecord> {
        let state = self.shared.lock();
        let latest = state
            .consent_history
            .get(user)
            .and_then(|events| events.iter().rev().find(|e| e.feature == feature));
        Ok(latest
            .cloned()
            .unwrap_or_else(|| ConsentRecord::undecided(user.clone(), feature)))
    }

    async fn all_current(&self, user: &UserId) -> StoreResult<Vec<ConsentRecord>> {
        let mut records = Vec::with_capacity(Feature::ALL.len());
        for feature in Feature::ALL {
            records.push(self.current(user, feature).await?);
        }
        Ok(records)
    }

    async fn granted_among(&self, feature: Feature, users: &[UserId]) -> StoreResult<Vec<bool>> {
        let mut granted = Vec::with_capacity(users.len());
        for user in users {
            granted.push(self.current(user, feature).await?.is_granted());
        }
        Ok(granted)
    }

    async fn history(&self, user: &UserId) -> StoreResult<Vec<ConsentEvent>> {
        let state = self.shared.lock();
        Ok(state.consent_history.get(user).cloned().unwrap_or_default())
    }

    async fn append(&self, event: ConsentEvent) -> StoreResult<()> {
        let mut state = self.shared.lock();
        let feature = event.feature;
        let events = state
            .consent_history
            .entry(event.user_id.clone())
            .or_default();
        events.push(event);
        let of_feature = events.iter().filter(|e| e.feature == feature).count();
        if of_feature > HISTORY_PER_FEATURE
            && let Some(oldest) = events.iter().position(|e| e.feature == feature)
        {
            events.remove(oldest);
        }
        Ok(())
    }

    async fn forget(&self, user: &UserId) -> StoreResult<u32> {
        let mut state = self.shared.lock();
        let removed = state.consent_history.remove(user).unwrap_or_default();
        Ok(removed.len() as u32)
    }

    async fn owe_purge(&self, user: &UserId, feature: Feature) -> StoreResult<OwedPurge> {
        let owed = OwedPurge {
            user: user.clone(),
            feature,
            token: crate::random::u64()?,
        };
        let now = self.now();
        self.shared.lock().owed.insert((now, owed.clone()));
        Ok(owed)
    }

    async fn owed_purges(&self, age: Duration, limit: usize) -> StoreResult<Vec<OwedPurge>> {
        let cut = Timestamp::from_millis(self.now().as_millis() - age.as_millis() as i64);
        let state = self.shared.lock();
        Ok(state
            .owed
            .iter()
            .take_while(|(at, _)| *at <= cut)
            .take(limit)
            .map(|(_, owed)| owed.clone())
            .collect())
    }

    async fn settle_purge(&self, owed: &OwedPurge) -> StoreResult<()> {
        self.shared.lock().owed.retain(|(_, o)| o != owed);
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
