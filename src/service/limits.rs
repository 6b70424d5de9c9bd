//! The abuse limits of contract §4.3 as the operations use them: rates counted and places held in
//! the location store (so they hold across every service node), refusals as
//! [`ServiceError::RateLimited`] with the real wait. A refused call has changed nothing.

use std::{sync::Arc, time::Duration};

use tokio_util::task::TaskTracker;

use super::{ServiceError, ServiceResult, Vicinity};
use crate::{
    domain::{Timestamp, limits::Rate},
    storage::{Admission, Holding, Limit, LimitKey, LimitStore},
};

impl Vicinity {
    /// Counts one call under `key` against `rate`: the store's time when admitted.
    pub(super) async fn admit(&self, key: LimitKey, rate: Rate) -> ServiceResult<Timestamp> {
        admitted(self.deps.limits.admit(&key, rate).await?, key.limit())
    }

    /// Counts one call under `key` against `rate` and takes a place under each of `caps`
    /// (key and cap) for `token`, for `hold` at most: all or nothing, in one store round trip
    /// on a single Redis (a refusal counts and takes nothing).
    pub(super) async fn admit_holding(
        &self,
        (key, rate): (LimitKey, Rate),
        caps: Vec<(LimitKey, u32)>,
        token: u64,
        hold: Duration,
    ) -> ServiceResult<Places> {
        // Armed before the store is asked: a call dropped while the answer is on its way
        // gives back whatever was taken (giving back what was not taken is harmless).
        let mut held = Places {
            limits: self.deps.limits.clone(),
            tasks: self.deps.tasks.clone(),
            token,
            keys: caps.iter().map(|(key, _)| key.clone()).collect(),
        };
        let holding = Holding {
            key: &key,
            rate,
            places: &caps,
            token,
            hold,
        };
        let judged = self.deps.limits.admit_holding(&holding).await;
        match judged {
            Ok(Ok(_)) => Ok(held),
            Ok(Err((limit, retry_after))) => {
                // Refused: the store took nothing.
                held.keys.clear();
                Err(ServiceError::RateLimited { limit, retry_after })
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The store's time of an admission, or the refusal of `limit` with its wait.
pub(super) fn admitted(admission: Admission, limit: Limit) -> ServiceResult<Timestamp> {
    match admission {
        Admission::Admitted(now) => Ok(now),
        Admission::Refused(retry_after) => Err(ServiceError::RateLimited { limit, retry_after }),
    }
}

/// Places held for one call: given back by [`Places::release`], or, if the call is dropped
/// first (its client went away), by a task of their own. Every place also ends by itself.
pub(super) struct Places {
    limits: Arc<dyn LimitStore>,
    /// Where a drop gives the places back ([`super::Deps::tasks`]).
    tasks: TaskTracker,
    token: u64,
    keys: Vec<LimitKey>,
}

impl Places {
    /// Moves the places into a new owner, leaving this one with none.
    pub(super) fn take(&mut self) -> Places {
        Places {
            limits: self.limits.clone(),
            tasks: self.tasks.clone(),
            token: self.token,
            keys: std::mem::take(&mut self.keys),
        }
    }

    /// Gives every place back now; a failure is logged (the place ends by itself).
    pub(super) async fn release(&mut self) {
        for key in std::mem::take(&mut self.keys) {
            if let Err(error) = self.limits.release(&key, self.token).await {
                tracing::warn!(%error, "could not give back a held place");
            }
        }
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut rest = self.take();
        self.tasks.spawn(async move { rest.release().await });
    }
}
